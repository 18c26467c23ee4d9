"""Lowering of ONNX's Einsum to `nn.matmul`, `nn.transpose` and `nn.reshape`, so that a constant operand is
a crossbar weight like any MatMul's.

Every equation is reduced to matrix products, one operand pair at a time, left to right:
- a letter repeated within one operand (a diagonal, `ii->i`, or a trace, `ii->`) is taken by a matmul with
  a constant 0/1 selection matrix [n·n, n];
- a letter in one operand only and not wanted later is summed out by a matmul with a ones column;
- a pair is then batch × free × contracted: each side is transposed to [batch, free, contracted] (or
  [batch, contracted, free]), flattened to 2-D or 3-D, multiplied, and reshaped and transposed to the
  letters wanted. A constant side is rearranged at compile time; when only the left side is constant the
  two sides swap, so the constant is the right operand, which crossbars hold. With batch letters both
  sides are 3-D and the product runs on the vector unit.
So `bij,jk->bik`, `ij,jk->ik` (a constant jk maps onto arrays) and attention's `bhqd,bhkd->bhqk` and
`bhqk,bhkd->bhqd` (vector unit) all lower. `...` is read as the leading axes the explicit letters leave,
which must be equally many in every operand. A letter whose sizes differ between operands (ONNX's size-1
broadcasting) is refused in one line naming the node and the equation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.core import Value

_ELLIPSIS_LETTERS = "0123456789"  # never labels in an equation, so free for the axes `...` stands for


@dataclass
class _Term:
    """An operand (IR value, or a constant array still to be placed) and the letter of each of its axes."""

    value: Value | None
    array: np.ndarray | None
    letters: str

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape if self.array is not None else self.value.type.shape


class _Einsum:
    def __init__(self, ctx: LowerContext, equation: str) -> None:
        self.ctx, self.equation = ctx, equation

    def refuse(self, why: str):
        return self.ctx.unsupported(f"Einsum equation {self.equation!r}: {why}")

    def value(self, term: _Term) -> Value:
        if term.value is None:
            term.value = self.ctx.builder.constant(self.ctx.node.output[0] + ".operand", term.array)
        return term.value

    def rearranged(self, term: _Term, letters: str, shape: tuple[int, ...]) -> _Term:
        """`term` with its axes in the order of `letters`, then reshaped to `shape`."""
        perm = tuple(term.letters.index(letter) for letter in letters)
        if term.array is not None:
            return _Term(None, np.ascontiguousarray(term.array.transpose(perm).reshape(shape)), "")
        value = term.value
        if perm != tuple(range(len(perm))):
            value = self.ctx.op("nn.transpose", [value], {"perm": perm})
        if value.type.shape != shape:
            value = self.ctx.op("nn.reshape", [value], {"shape": shape})
        return _Term(value, None, "")

    def matmul(self, lhs: _Term, rhs: _Term) -> Value:
        if lhs.array is not None and rhs.array is not None:
            return self.ctx.builder.constant(self.ctx.node.output[0] + ".product", np.matmul(lhs.array, rhs.array))
        return self.ctx.op("nn.matmul", [self.value(lhs), self.value(rhs)])

    def sizes(self, terms: list[_Term]) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for term in terms:
            for letter, size in zip(term.letters, term.shape):
                if sizes.setdefault(letter, size) != size:
                    raise self.refuse(f"label {letter!r} has sizes {sizes[letter]} and {size} "
                                      f"(rcc does not broadcast them)")
        return sizes

    def times_constant(self, term: _Term, kept: str, reduced: str, matrix: np.ndarray) -> tuple[Value, bool]:
        """The product of `term`'s axes `reduced` (flattened) with the constant `matrix` [R, q]: a value
        [K, q] (True: the constant on the right, a crossbar weight, for float32) or else [q, K] (False: the
        constant on the left, on the vector unit, since crossbars hold float32 weights only), K the size
        of the axes `kept`."""
        shape = dict(zip(term.letters, term.shape))
        kept_size, reduced_size = math.prod(shape[l] for l in kept), math.prod(shape[l] for l in reduced)
        constant = matrix.astype(self.dtype)
        if self.dtype == np.float32:
            flat = self.rearranged(term, kept + reduced, (kept_size, reduced_size))
            return self.matmul(flat, _Term(None, constant, "")), True
        flat = self.rearranged(term, reduced + kept, (reduced_size, kept_size))
        return self.matmul(_Term(None, np.ascontiguousarray(constant.T), ""), flat), False

    def diagonal(self, term: _Term) -> _Term:
        """`term` with one repeated letter taken once (its diagonal), by a constant 0/1 selection matmul."""
        letter = next(letter for letter in term.letters if term.letters.count(letter) > 1)
        if term.letters.count(letter) > 2:
            raise self.refuse(f"label {letter!r} appears more than twice in one operand")
        first, second = (i for i, l in enumerate(term.letters) if l == letter)
        rest = "".join(l for i, l in enumerate(term.letters) if i not in (first, second))
        n = term.shape[first]
        rest_shape = tuple(d for i, d in enumerate(term.shape) if i not in (first, second))
        marked = _Term(term.value, term.array, term.letters[:second] + "#" + term.letters[second + 1:])
        select = np.zeros((n * n, n))
        select[np.arange(n) * (n + 1), np.arange(n)] = 1
        taken, last = self.times_constant(marked, rest, letter + "#", select)
        if last:
            return _Term(self.ctx.op("nn.reshape", [taken], {"shape": rest_shape + (n,)}), None, rest + letter)
        return _Term(self.ctx.op("nn.reshape", [taken], {"shape": (n,) + rest_shape}), None, letter + rest)

    def sum_out(self, term: _Term, keep: str) -> _Term:
        """`term` summed over its letters not in `keep`, by a matmul with a ones column."""
        kept = "".join(l for l in term.letters if l in keep)
        dropped = "".join(l for l in term.letters if l not in keep)
        shape = dict(zip(term.letters, term.shape))
        summed = math.prod(shape[l] for l in dropped)
        total, _ = self.times_constant(term, kept, dropped, np.ones((summed, 1)))
        return _Term(self.ctx.op("nn.reshape", [total], {"shape": tuple(shape[l] for l in kept)}), None, kept)

    def simplify(self, term: _Term, keep: str) -> _Term:
        while len(set(term.letters)) != len(term.letters):
            term = self.diagonal(term)
        if any(letter not in keep for letter in term.letters):
            term = self.sum_out(term, keep)
        return term

    def contract(self, lhs: _Term, rhs: _Term, wanted: str) -> _Term:
        """The product of two terms over their shared letters, keeping the letters in `wanted`."""
        if lhs.array is not None and rhs.array is None:
            lhs, rhs = rhs, lhs  # the constant on the right, where crossbars hold it
        sizes = self.sizes([lhs, rhs])
        batch = "".join(l for l in lhs.letters if l in rhs.letters and l in wanted)
        shared = "".join(l for l in lhs.letters if l in rhs.letters and l not in wanted)
        left = "".join(l for l in lhs.letters if l not in rhs.letters)
        right = "".join(l for l in rhs.letters if l not in lhs.letters)
        size = lambda letters: math.prod(sizes[l] for l in letters)  # noqa: E731
        lead = (size(batch),) if batch else ()
        a = self.rearranged(lhs, batch + left + shared, lead + (size(left), size(shared)))
        b = self.rearranged(rhs, batch + shared + right, lead + (size(shared), size(right)))
        product = self.matmul(a, b)
        letters = batch + left + right
        shape = tuple(sizes[l] for l in letters)
        if product.type.shape != shape:
            product = self.ctx.op("nn.reshape", [product], {"shape": shape})
        return _Term(product, None, letters)

    @property
    def dtype(self) -> np.dtype:
        return self.ctx.input_type(0).np_dtype


def parse_equation(equation: str, ranks: list[int]) -> tuple[list[str], str] | str:
    """(letters of each operand, letters of the result) with `...` expanded, or why the equation is refused."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ranks):
        return f"{len(terms)} operands in the equation, {len(ranks)} inputs"
    widths = {rank - len(t.replace("...", "")) for t, rank in zip(terms, ranks) if "..." in t}
    if len(widths) > 1 or min(widths, default=0) < 0:
        return "`...` stands for different numbers of axes (rcc does not broadcast them)"
    fill = _ELLIPSIS_LETTERS[:widths.pop()] if widths else ""
    terms = [t.replace("...", fill) for t in terms]
    if not arrow:
        letters = "".join(terms)
        output = fill + "".join(sorted(l for l in set(letters) - set(fill) if letters.count(l) == 1))
    output = output.replace("...", fill)
    for term, rank in zip(terms, ranks):
        if len(term) != rank or not all(l.isalpha() or l in fill for l in term):
            return f"operand {term!r} does not label the {rank} axes of its input"
    if len(set(output)) != len(output) or any(l not in "".join(terms) for l in output):
        return f"result {output!r} repeats a label or names one no operand has"
    return terms, output


@rule("Einsum")
def lower_einsum(ctx: LowerContext) -> None:
    equation = ctx.attr("equation", "")
    einsum = _Einsum(ctx, equation)
    indices = [i for i in range(len(ctx.node.input)) if ctx.has_input(i)]
    parsed = parse_equation(equation, [ctx.input_type(i).rank for i in indices])
    if isinstance(parsed, str):
        raise ctx.error(f"Einsum equation {equation!r}: {parsed}")
    letters, output = parsed
    terms = [_Term(None, ctx.constant(i, "operand"), l) if ctx.is_constant(i) else _Term(ctx.input(i), None, l)
             for i, l in zip(indices, letters)]
    if any(ctx.input_type(i).dtype != ctx.input_type(0).dtype or ctx.input_type(i).dtype not in ("f16", "f32", "f64")
           for i in indices):
        raise einsum.refuse("rcc lowers float operands of one dtype")
    einsum.sizes(terms)
    later = lambda position: output + "".join(t.letters for t in terms[position:])  # noqa: E731
    result = einsum.simplify(terms[0], later(1))
    for position in range(1, len(terms)):
        wanted = later(position + 1)
        result = einsum.contract(result, einsum.simplify(terms[position], wanted + result.letters), wanted)
    result = einsum.simplify(result, output)
    final = einsum.rearranged(result, output, tuple(einsum.sizes([result])[l] for l in output))
    value = einsum.value(final)
    ctx.bind(0, ctx.op("nn.identity", [value]) if value.producer is None else value)
