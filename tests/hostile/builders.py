"""Generated inputs for the hostile-input corpus: tiny ONNX models, programs, archives and IR text.

Nothing here is checked in as a binary; every file is built in the test's temporary folder.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.program import program_bytes
from rcc.compiler import driver


def save_model(path: Path, nodes: list, inputs: list, outputs: list, initializers: list | None = None,
               opset: int = 17) -> Path:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tensor(name: str, shape: list, elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def mlp_model(path: Path, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
              weight_dtype: Any = np.float32) -> Path:
    """y = relu(x[1,4] · W[4,3] + b)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3)).astype(weight_dtype) if weight is None else weight
    bias = rng.standard_normal(3).astype(weight.dtype) if bias is None else bias
    elem = helper.np_dtype_to_tensor_dtype(weight.dtype)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
             helper.make_node("Add", ["h", "b"], ["hb"], name="bias_add"),
             helper.make_node("Relu", ["hb"], ["y"], name="act")]
    return save_model(path, nodes, [tensor("x", [1, 4], elem)], [tensor("y", [1, 3], elem)],
                      [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")])


def conv_model(path: Path, input_shape: list) -> Path:
    """y = conv3x3(x, W[8, C, 3, 3]) with padding 1."""
    weight = np.random.default_rng(1).standard_normal((8, input_shape[1], 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    out = [input_shape[0], 8, *input_shape[2:]]
    return save_model(path, nodes, [tensor("x", input_shape)], [tensor("y", out)],
                      [numpy_helper.from_array(weight, "W")])


def mlp_inputs(path: Path, value: float | None = None) -> Path:
    x = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4)
    if value is not None:
        x[0, 1] = value
    np.savez(path, x=x)
    return path


def compiled_mlp(folder: Path) -> tuple[Path, dict]:
    """A valid program of the MLP (integer precision) and its header, for tampering."""
    model = mlp_model(folder / "mlp.onnx")
    program = driver.compile_model(model).program
    path = folder / "mlp.rccp"
    path.write_bytes(program_bytes(program))
    return path, program


def rewrite_program(source: Path, target: Path, edit_header=None, edit_members=None) -> Path:
    """Copy a program archive applying `edit_header(header)` and `edit_members(dict name → bytes)`."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["program.json"])
    if edit_header is not None:
        header = edit_header(header)
    members["program.json"] = json.dumps(header).encode()
    if edit_members is not None:
        edit_members(members)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def lying_npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """An .npy header declaring `shape` followed by a few bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 64


def deflate_bomb_member(name: str, inflated_bytes: int) -> tuple[zipfile.ZipInfo, bytes]:
    """A deflated .npy member of zeros inflating to about `inflated_bytes` (~1000-fold): one compressed
    16 MiB block of zeros repeated (a full flush resets the window, so blocks are independent)."""
    chunk = bytes(2**24)
    blocks = max(1, inflated_bytes // len(chunk))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (blocks * len(chunk) // 4,)})
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header.getvalue()) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = head + body * blocks + compressor.flush()
    crc = zlib.crc32(header.getvalue())
    for _ in range(blocks):
        crc = zlib.crc32(chunk, crc)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = len(header.getvalue()) + blocks * len(chunk)
    info.compress_size = len(data)
    info.CRC = crc
    return info, data


def write_raw_zip(path: Path, members: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    """A zip archive whose members are already compressed (`data` is written as is)."""
    with open(path, "wb") as file:
        entries = []
        for info, data in members:
            offset = file.tell()
            name = info.filename.encode()
            file.write(b"PK\x03\x04" + _le(20, 2) + _le(0, 2) + _le(info.compress_type, 2) + _le(0, 4)
                       + _le(info.CRC, 4) + _le(info.compress_size, 4) + _le(info.file_size, 4)
                       + _le(len(name), 2) + _le(0, 2) + name)
            file.write(data)
            entries.append((info, name, offset))
        start = file.tell()
        for info, name, offset in entries:
            file.write(b"PK\x01\x02" + _le(20, 2) + _le(20, 2) + _le(0, 2) + _le(info.compress_type, 2)
                       + _le(0, 4) + _le(info.CRC, 4) + _le(info.compress_size, 4) + _le(info.file_size, 4)
                       + _le(len(name), 2) + _le(0, 2) * 4 + _le(0, 4) + _le(offset, 4) + name)
        end = file.tell()
        file.write(b"PK\x05\x06" + _le(0, 4) + _le(len(entries), 2) * 2 + _le(end - start, 4) + _le(start, 4)
                   + _le(0, 2))
    return path


def _le(value: int, size: int) -> bytes:
    return int(value).to_bytes(size, "little")
