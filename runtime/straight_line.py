"""The plan's quickest loop as straight-line code: one generated Python function per `Plan`.

A single-sample run that nothing observes or records (`Plan.run`'s common case) does per step only the call,
the slots' bookkeeping and a progress tick. Written as a loop that bookkeeping costs about a microsecond a step
(the operand list, the zip over results, the free list, two tests), as much as a small numpy call; generated as
straight-line code each buffer is a local variable, a step is one line (`v7 = runs[3]([v2, v5])[0]`), a buffer
no later step reads is deleted (`del v2`: peak memory as the loop's), a step that passes its operand on (its
work done by an earlier step, `runtime/fusion.py`) is an assignment, a reshape (a step with a `method_call`) is that
method call on its operand (`v7 = v2.reshape((16, 4, 8))`: a microsecond less than the call through its step), and a
store writes its output. The
generated function does what the loop does, in the same order, with the same callables. It is generated once per
plan (about 30 µs a step) and reads its callables from a list, which the switch to compiled steps updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

StraightLine = Callable[[list, dict, Callable[[int], None]], None]


def straight_line(steps: Sequence, pass_on: Callable) -> tuple[StraightLine, list[Callable]]:
    """A function (slots, outputs, advance) running `steps` (runtime/plan.py's PlannedStep: run, src, dst, free,
    output, progress) in order on `slots` (the plan's template with the loaded inputs, emptied once read) into
    `outputs`, as `Plan._run_steps` does for one sample; steps whose run is `pass_on`
    become assignments. With it, the list of the callables it calls, by step: replacing an entry (a compiled
    step) changes what the function calls without generating it again."""
    written = {index for step in steps for index in step.dst}
    read_first = sorted({index for step in steps for index in step.src} - written)
    lines = [f"    v{index} = slots[{index}]" for index in read_first] + ["    slots.clear()"]
    runs = [step.run for step in steps]
    for position, step in enumerate(steps):
        run, src, dst, free, output, progress = step.run, step.src, step.dst, step.free, step.output, step.progress
        operands = ", ".join(f"v{index}" for index in src)
        if output is not None:
            lines.append(f"    outputs[{output!r}] = v{src[0]}")
        elif run is pass_on and len(dst) == 1:
            lines.append(f"    v{dst[0]} = v{src[0]}")
        elif hasattr(run, "method_call") and not hasattr(run, "compiled_form") and len(dst) == 1:   # a reshape
            lines.append(f"    v{dst[0]} = v{src[0]}{run.method_call}")
        else:
            call = f"runs[{position}]([{operands}])"
            if len(dst) == 1:
                lines.append(f"    v{dst[0]} = {call}[0]")
            elif dst:
                lines.append(f"    results = {call}")
                lines.extend(f"    v{index} = results[{k}]" for k, index in enumerate(dst))
                lines.append("    del results")
            else:
                lines.append(f"    {call}")
        if free:
            lines.append("    del " + ", ".join(f"v{index}" for index in free))
        if progress:
            lines.append(f"    advance({progress})")
    source = "def run(slots, outputs, advance):\n" + "\n".join(lines) + "\n"
    namespace: dict[str, object] = {"runs": runs}
    exec(compile(source, "<rcc plan>", "exec"), namespace)   # noqa: S102 -- our own generated code, no input text
    return namespace["run"], runs   # type: ignore[return-value]
