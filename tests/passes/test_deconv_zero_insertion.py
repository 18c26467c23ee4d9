"""`deconv-zero-insertion` on random transposed convolutions and on the zoo's deconvolution models.

The property test draws ConvTranspose configurations onnxruntime accepts (output_padding < stride) with
the corners the lowering has to get right: stride larger than the kernel, pads larger than d·(k−1) (the
pad op then crops), asymmetric pads, dilation, groups and depthwise, with and without bias. The
interpreter runs the module before and after the pass on the same inputs; the results must agree.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcc.ir.inputs import random_inputs
from rcc.compiler.pass_manager import run_pipeline
from rcc.ir import Module, OPS, TensorType, interpreter
from tests.passes.deconv_cases import deconv_modules, rewritten_zoo_model



@settings(max_examples=200, deadline=None)
@given(module=deconv_modules(), seed=st.integers(0, 2**16))
def test_lowering_computes_the_transposed_convolution(module: Module, seed: int) -> None:
    inputs = random_inputs(module, seed=seed)
    before = interpreter.run(module, inputs)
    run_pipeline(module, ["deconv-zero-insertion"])
    assert not any(op.opname == "nn.conv_transpose2d" for op in module.ops)
    assert [v.name for v in module.outputs] == ["y"]
    after = interpreter.run(module, inputs)
    np.testing.assert_allclose(after["y"], before["y"], rtol=1e-4, atol=1e-5)


def test_zero_insert_places_pixels_on_the_stride_grid() -> None:
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 1, 2, 3)
    (out,) = OPS["nn.zero_insert"].run([x], {"strides": (3, 2)})
    assert out.shape == (1, 1, 4, 5)
    np.testing.assert_array_equal(out[:, :, ::3, ::2], x)
    assert np.count_nonzero(out) == x.size
    with pytest.raises(ValueError, match="strides"):
        OPS["nn.zero_insert"].infer([TensorType((1, 1, 2, 2))], {"strides": (0, 1)})


@pytest.mark.parametrize("model", ["dcgan_generator", "fcn_segmenter", "unet_small"])
def test_zoo_deconvolutions_lowered_match_onnxruntime(model: str) -> None:
    rewritten_zoo_model(model, "deconv-zero-insertion")
