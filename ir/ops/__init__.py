"""Op definitions; importing this package fills `ir.optable.OPS`. One file per family of ops."""

from rcc.ir.ops import nn_activation, nn_elementwise, nn_linear, nn_norm, nn_pool, nn_shape, xbar, xbar_write  # noqa: F401
from rcc.ir.ops import nn_grid_sample, nn_index, nn_logic, nn_math, nn_reduce, nn_resize, nn_transcendental  # noqa: F401
from rcc.ir.ops import nn_select  # noqa: F401  (top-k, one-hot, triangles)
from rcc.ir.ops import nn_quant  # noqa: F401  (quantized-model ops)
from rcc.ir.ops import nn_quant_tables  # noqa: F401  (quantized-model lookup-table ops)
from rcc.ir.ops import nn_quant_deconv  # noqa: F401  (the quantized transposed convolution)
