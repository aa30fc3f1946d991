"""Read a TFLite flatbuffer's first subgraph and build one torch module per op (``loader.py``).

Load-time work only: static shapes, constants (fp16 dequantised to fp32), and for each op the
arguments its module needs already in torch's layout (OIHW kernels, explicit pads, axes mapped from
NHWC to NCHW for 4-D tensors, permutations composed with the layout change). Raises
NotImplementedError, naming the op or option, for anything outside the supported set.
"""

from __future__ import annotations

from collections.abc import Callable

import flatbuffers
import numpy as np
import tflite
import torch
from flatbuffers import flexbuffers
from torch import Tensor, nn

from face3d.models.nets.tflite import custom_ops as custom
from face3d.models.nets.tflite.ops import (
    ACT_NONE,
    ACT_RELU,
    ACT_RELU6,
    ACT_RELU_N1_TO_1,
    NCHW_TO_NHWC_AXIS,
    NHWC_TO_NCHW_AXIS,
    Activation,
    Binary,
    Concat,
    Conv,
    DepthToSpace,
    FullyConnected,
    MaxPool,
    Pad,
    PReLU,
    Reduce,
    Reshape,
    ResizeBilinear,
    Slice,
    Transpose,
    Unary,
    nchw_constant,
    squared_difference,
)

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}  # tflite.TensorType values
_SAME, _VALID = 0, 1  # tflite.Padding


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding along one axis: the odd pixel goes after (bottom/right), unlike torch."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _checked_activation(options: object | None) -> int:
    if options is None:
        return ACT_NONE
    code = int(options.FusedActivationFunction())
    if code not in (ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6):
        raise NotImplementedError(f"fused activation {code}")
    return code


_SEGMENT_VECTORS = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}  # SparseIndexVector


def _index_vector(table: flatbuffers.table.Table, kind: int) -> np.ndarray:
    vector = _SEGMENT_VECTORS[kind]()
    vector.Init(table.Bytes, table.Pos)
    return vector.ValuesAsNumpy().astype(np.int64)


def _densify(values: np.ndarray, shape: tuple[int, ...], sparsity: tflite.SparsityParameters) -> np.ndarray:
    """A sparse constant (TFLite's SparsityParameters: dimensions in order, each DENSE or CSR, no
    blocks, as MediaPipe's sparse full-range BlazeFace stores its kernels) as a dense array.

    Walks the dimensions outermost first, keeping for every element reached so far its flat index in
    the dense array and its position in the level (a CSR level's children of position p are
    segments[p]..segments[p+1], at coordinates indices[...]); the last level's positions index values.
    """
    if sparsity.BlockMapLength() or list(sparsity.TraversalOrderAsNumpy()) != list(range(len(shape))):
        raise NotImplementedError("block-sparse or reordered sparse constant")
    flat, position = np.zeros(1, np.int64), np.zeros(1, np.int64)
    for axis, size in enumerate(shape):
        meta = sparsity.DimMetadata(axis)
        if meta.Format() == tflite.DimensionType.DENSE:
            span = np.arange(meta.DenseSize())
            flat = (flat[:, None] * size + span).ravel()
            position = (position[:, None] * meta.DenseSize() + span).ravel()
            continue
        segments = _index_vector(meta.ArraySegments(), meta.ArraySegmentsType())
        indices = _index_vector(meta.ArrayIndices(), meta.ArrayIndicesType())
        counts = segments[position + 1] - segments[position]
        children = np.concatenate([np.arange(segments[p], segments[p + 1]) for p in position])
        flat = np.repeat(flat, counts) * size + indices[children]
        position = children
    dense = np.zeros(int(np.prod(shape)), values.dtype)
    dense[flat] = values[position]
    return dense.reshape(shape)


class GraphReader:
    """Reads one subgraph: static shapes, constants (fp16 dequantised) and per-op module builders."""

    def __init__(self, model: tflite.Model) -> None:
        self.graph = model.Subgraphs(0)
        self.graph_outputs = {int(self.graph.Outputs(k)) for k in range(self.graph.OutputsLength())}
        self.constants: dict[int, np.ndarray] = {}
        for i in range(self.graph.TensorsLength()):
            tensor = self.graph.Tensors(i)
            buffer = model.Buffers(tensor.Buffer())
            if buffer is not None and buffer.DataLength():
                dtype = _NUMPY_TYPES.get(tensor.Type())
                if dtype is None:
                    raise NotImplementedError(
                        f"constant {tensor.Name()!r} has unsupported type {tensor.Type()}"
                    )
                values = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype)
                sparsity = tensor.Sparsity()
                if sparsity is not None:
                    self.constants[i] = _densify(values, self.shape(i), sparsity)
                else:
                    self.constants[i] = values.reshape(self.shape(i)).copy()

    def shape(self, index: int) -> tuple[int, ...]:
        tensor = self.graph.Tensors(index)
        return tuple(int(v) for v in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    def name(self, index: int) -> str:
        return self.graph.Tensors(index).Name().decode()

    def float_const(self, index: int) -> np.ndarray:
        return self.constants[index].astype(np.float32)

    def int_list(self, index: int) -> list[int]:
        return [int(v) for v in np.atleast_1d(self.constants[index])]

    @staticmethod
    def options(op: tflite.Operator, cls: type) -> object | None:
        table = op.BuiltinOptions()
        if table is None:
            return None
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def conv(self, op: tflite.Operator, depthwise: bool) -> nn.Module:
        x_idx, w_idx, *rest = (int(i) for i in op.InputsAsNumpy())
        o = self.options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        kernel = self.float_const(w_idx)  # conv: (O, KH, KW, I); depthwise: (1, KH, KW, C*M)
        weight = kernel.transpose(3, 0, 1, 2) if depthwise else kernel.transpose(0, 3, 1, 2)
        groups = self.shape(x_idx)[3] if depthwise else 1
        bias = torch.from_numpy(self.float_const(rest[0])) if rest and rest[0] >= 0 else None
        _, h, w, _ = self.shape(x_idx)
        stride, dilation = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
        pads = self.pads(o.Padding(), (h, w), weight.shape[2:], stride, dilation)
        weight_t = torch.from_numpy(np.ascontiguousarray(weight))
        return Conv(weight_t, bias, stride, dilation, groups, pads, _checked_activation(o))

    @staticmethod
    def pads(
        padding: int,
        size: tuple[int, int],
        kernel: tuple[int, ...],
        stride: tuple[int, int],
        dilation: tuple[int, int] = (1, 1),
    ) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) for TFLite's SAME or VALID padding."""
        if padding == _VALID:
            return (0, 0, 0, 0)
        top_bottom = _same_pads(size[0], kernel[0], stride[0], dilation[0])
        return (*top_bottom, *_same_pads(size[1], kernel[1], stride[1], dilation[1]))

    def max_pool(self, op: tflite.Operator) -> nn.Module:
        o = self.options(op, tflite.Pool2DOptions)
        _, h, w, _ = self.shape(int(op.Inputs(0)))
        kernel, stride = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        return MaxPool(kernel, stride, self.pads(o.Padding(), (h, w), kernel, stride), _checked_activation(o))

    def prelu(self, op: tflite.Operator) -> nn.Module:
        alpha = self.float_const(int(op.Inputs(1)))
        if alpha.size != alpha.shape[-1] or len(self.shape(int(op.Inputs(0)))) != 4:
            raise NotImplementedError(f"PRELU with non per-channel alpha {alpha.shape}")
        return PReLU(torch.from_numpy(alpha.reshape(-1)))

    def binary(
        self, op: tflite.Operator, fn: Callable[[Tensor, Tensor], Tensor], cls: type | None
    ) -> nn.Module:
        a, b = int(op.Inputs(0)), int(op.Inputs(1))
        activation = _checked_activation(self.options(op, cls) if cls is not None else None)
        if a in self.constants and b in self.constants:
            raise NotImplementedError("binary op of two constants")
        if a in self.constants or b in self.constants:
            runtime, const = (b, a) if a in self.constants else (a, b)
            value, rank = self.float_const(const), len(self.shape(runtime))
            if value.ndim > rank:
                raise NotImplementedError(f"constant {value.shape} broadcast to rank {rank}")
            constant = nchw_constant(value) if rank == 4 and value.size > 1 else torch.from_numpy(value)
            return Binary(fn, constant, activation, constant_first=const == a)
        ranks = {len(self.shape(a)), len(self.shape(b))}
        if len(ranks) > 1 and 4 in ranks:  # NHWC trailing-axis broadcasting would not carry over to NCHW
            raise NotImplementedError(f"broadcasting {self.shape(a)} with {self.shape(b)}")
        return Binary(fn, None, activation)

    def fully_connected(self, op: tflite.Operator) -> nn.Module:
        x_idx, w_idx, *rest = (int(i) for i in op.InputsAsNumpy())
        o = self.options(op, tflite.FullyConnectedOptions)
        if len(self.shape(x_idx)) != 2 or w_idx not in self.constants or o.KeepNumDims():
            raise NotImplementedError(f"FULLY_CONNECTED of a {self.shape(x_idx)} input or runtime weights")
        if o.WeightsFormat() != tflite.FullyConnectedOptionsWeightsFormat.DEFAULT:
            raise NotImplementedError("FULLY_CONNECTED with shuffled weights")
        bias = torch.from_numpy(self.float_const(rest[0])) if rest and rest[0] >= 0 else None
        weight = torch.from_numpy(self.float_const(w_idx))
        return FullyConnected(weight, bias, _checked_activation(o))

    def reduce(self, op: tflite.Operator, fn: Callable[..., Tensor]) -> nn.Module:
        rank = len(self.shape(int(op.Inputs(0))))
        axes = sorted({axis % rank for axis in self.int_list(int(op.Inputs(1)))})
        if 0 in axes:
            raise NotImplementedError("reduction over the batch axis")
        keep = bool(self.options(op, tflite.ReducerOptions).KeepDims())
        if rank == 4 and keep:
            return Reduce(fn, tuple(NHWC_TO_NCHW_AXIS[a] for a in axes), True, to_nhwc=False)
        return Reduce(fn, tuple(axes), keep, to_nhwc=rank == 4)

    def transpose(self, op: tflite.Operator) -> nn.Module:
        perm = self.int_list(int(op.Inputs(1)))
        if perm[0] != 0:
            raise NotImplementedError(f"TRANSPOSE {perm} moves the batch axis")
        if len(perm) == 4:  # NCHW in -> NHWC view -> TFLite's permutation -> NCHW out, as one permute
            return Transpose(tuple(NHWC_TO_NCHW_AXIS[perm[NCHW_TO_NHWC_AXIS[k]]] for k in range(4)))
        return Transpose(tuple(perm))

    def pad(self, op: tflite.Operator) -> nn.Module:
        pads = self.constants[int(op.Inputs(1))].astype(int).tolist()
        if pads[0] != [0, 0]:
            raise NotImplementedError("PAD along the batch axis")
        if len(pads) == 4:  # NHWC -> NCHW
            pads = [pads[0], pads[3], pads[1], pads[2]]
        return Pad(tuple(int(v) for pair in reversed(pads[1:]) for v in pair))

    def reshape(self, op: tflite.Operator) -> nn.Module:
        src, dst = self.shape(int(op.Inputs(0))), self.shape(int(op.Outputs(0)))
        if src[:1] != (1,) or dst[:1] != (1,):
            raise NotImplementedError(f"RESHAPE {src} -> {dst} does not keep the batch axis first")
        return Reshape(len(src) == 4, dst[1:], len(dst) == 4)

    def concat(self, op: tflite.Operator) -> nn.Module:
        o = self.options(op, tflite.ConcatenationOptions)
        rank = len(self.shape(int(op.Outputs(0))))
        axis = o.Axis() % rank
        if axis == 0:
            raise NotImplementedError("CONCATENATION along the batch axis")
        parts: list[int | None] = []
        constants: list[Tensor] = []
        for index in (int(i) for i in op.InputsAsNumpy()):
            if index not in self.constants:
                parts.append(None)
                continue
            value = self.float_const(index)
            if value.shape[:1] != (1,):
                raise NotImplementedError(f"CONCATENATION of a constant of shape {value.shape}")
            parts.append(len(constants))
            constants.append(nchw_constant(value) if rank == 4 else torch.from_numpy(value))
        if None not in parts:
            raise NotImplementedError("CONCATENATION of constants only")
        dim = NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis
        return Concat(dim, _checked_activation(o), tuple(parts), constants)

    def strided_slice(self, op: tflite.Operator) -> nn.Module:
        o = self.options(op, tflite.StridedSliceOptions)
        if o.EllipsisMask() or o.NewAxisMask():
            raise NotImplementedError("STRIDED_SLICE with ellipsis/new-axis masks")
        shape, shrink = self.shape(int(op.Inputs(0))), o.ShrinkAxisMask()
        if shrink and len(shape) == 4:
            raise NotImplementedError("STRIDED_SLICE shrinking a 4-D tensor")
        begin, end, step = (self.int_list(int(op.Inputs(k))) for k in (1, 2, 3))
        bounds: list[tuple[int | None, int | None, int] | int] = []
        for axis, dim in enumerate(shape):
            if shrink >> axis & 1:
                if axis == 0:  # TFLite squeezing its batch of one off a graph output: batched, keep it
                    if dim != 1 or int(op.Outputs(0)) not in self.graph_outputs:
                        raise NotImplementedError("STRIDED_SLICE shrinking the batch axis inside the graph")
                    bounds.append((None, None, 1))
                else:
                    bounds.append(begin[axis] % dim)
                continue
            b = None if o.BeginMask() >> axis & 1 else begin[axis]
            e = None if o.EndMask() >> axis & 1 else end[axis]
            full = range(dim)[slice(b, e, step[axis])] == range(dim)
            if axis == 0 and not full:
                raise NotImplementedError("STRIDED_SLICE along the batch axis")
            bounds.append((None, None, 1) if full else (b, e, step[axis]))
        if len(shape) == 4:
            bounds = [bounds[a] for a in NCHW_TO_NHWC_AXIS]
        return Slice(tuple(bounds))

    def resize_bilinear(self, op: tflite.Operator) -> nn.Module:
        o = self.options(op, tflite.ResizeBilinearOptions)
        if not (o.AlignCorners() or o.HalfPixelCenters()):
            raise NotImplementedError("RESIZE_BILINEAR without half-pixel centres or aligned corners")
        _, height, width, _ = self.shape(int(op.Outputs(0)))
        return ResizeBilinear((height, width), bool(o.AlignCorners()))

    def depth_to_space(self, op: tflite.Operator) -> nn.Module:
        return DepthToSpace(self.options(op, tflite.DepthToSpaceOptions).BlockSize())

    def custom(self, op: tflite.Operator, name: str) -> nn.Module:
        options = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy())) if op.CustomOptionsLength() else {}
        if name == "Landmarks2TransformMatrix":
            return custom.Landmarks2TransformMatrix(options)
        if name == "TransformTensorBilinear":
            _, in_h, in_w, _ = self.shape(int(op.Inputs(0)))
            return custom.TransformTensorBilinear(
                int(options["output_height"]), int(options["output_width"]), in_h, in_w
            )
        if name == "TransformLandmarks":
            return custom.TransformLandmarks()
        raise NotImplementedError(f"custom op {name}")

    def builders(self) -> dict[str, Callable[[tflite.Operator], nn.Module]]:
        """The supported builtin ops by TFLite name."""
        return {
            "CONV_2D": lambda op: self.conv(op, depthwise=False),
            "DEPTHWISE_CONV_2D": lambda op: self.conv(op, depthwise=True),
            "MAX_POOL_2D": self.max_pool,
            "PRELU": self.prelu,
            "RELU": lambda op: Activation(ACT_RELU),
            "RELU6": lambda op: Activation(ACT_RELU6),
            "LOGISTIC": lambda op: Unary(torch.sigmoid),
            "SQRT": lambda op: Unary(torch.sqrt),
            "RSQRT": lambda op: Unary(torch.rsqrt),
            "NEG": lambda op: Unary(torch.neg),
            "ADD": lambda op: self.binary(op, torch.add, tflite.AddOptions),
            "SUB": lambda op: self.binary(op, torch.sub, tflite.SubOptions),
            "MUL": lambda op: self.binary(op, torch.mul, tflite.MulOptions),
            "DIV": lambda op: self.binary(op, torch.div, tflite.DivOptions),
            "SQUARED_DIFFERENCE": lambda op: self.binary(op, squared_difference, None),
            "MEAN": lambda op: self.reduce(op, torch.mean),
            "SUM": lambda op: self.reduce(op, torch.sum),
            "TRANSPOSE": self.transpose,
            "PAD": self.pad,
            "RESHAPE": self.reshape,
            "CONCATENATION": self.concat,
            "STRIDED_SLICE": self.strided_slice,
            "RESIZE_BILINEAR": self.resize_bilinear,
            "DEPTH_TO_SPACE": self.depth_to_space,
            "FULLY_CONNECTED": self.fully_connected,
        }
