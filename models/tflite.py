"""Rebuild a TFLite flatbuffer as a native torch ``nn.Module`` (the op set of MediaPipe's face nets).

Why rebuild instead of running TFLite: one runtime for every stage, batches of any size, any torch
device and dtype, and ``torch.compile``. The flatbuffer is parsed once with the ``tflite`` schema
package; every weight is converted at load time (fp16 constants dequantised to fp32, kernels
transposed to torch's OIHW layout, TFLite SAME padding resolved to explicit pads), so ``forward`` is a
fixed sequence of torch calls whose arguments are plain Python ints and floats.

Layout: every 4-D activation runs NCHW internally (torch's native conv layout). Graph outputs come
back in TFLite's shapes (NHWC for 4-D), with the batch dimension equal to the input's.

The 478-point model carries three MediaPipe custom ops (attention crops around lips and eyes):
``Landmarks2TransformMatrix``, ``TransformTensorBilinear`` and ``TransformLandmarks`` (version 2).
They are implemented here from the semantics of MediaPipe's reference kernels
(mediapipe/util/tflite/operations/*.cc).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from flatbuffers import flexbuffers
from torch import Tensor, nn

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}  # tflite.TensorType values
_SAME, _VALID = 0, 1  # tflite.Padding
_ACT_NONE, _ACT_RELU, _ACT_RELU_N1_TO_1, _ACT_RELU6 = 0, 1, 2, 3  # tflite.ActivationFunctionType
_NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # TFLite axis -> torch axis of the same 4-D tensor


def _activate(x: Tensor, code: int) -> Tensor:
    """A TFLite fused activation; ``code`` is a Python int validated at load, so this is static."""
    if code == _ACT_RELU:
        return F.relu(x)
    if code == _ACT_RELU6:
        return F.hardtanh(x, 0.0, 6.0)
    if code == _ACT_RELU_N1_TO_1:
        return F.hardtanh(x, -1.0, 1.0)
    return x


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding along one axis: the odd pixel goes after (bottom/right), unlike torch."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _nchw_constant(value: np.ndarray) -> Tensor:
    """A constant broadcast against a 4-D NHWC tensor, reshaped to broadcast against its NCHW twin."""
    value = value.reshape((1,) * (4 - value.ndim) + value.shape)
    return torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2)))


class _Conv(nn.Module):
    """CONV_2D and DEPTHWISE_CONV_2D with weights already in OIHW and SAME padding made explicit."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        pads: tuple[int, int, int, int],
        activation: int,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.stride, self.dilation, self.groups, self.activation = stride, dilation, groups, activation
        top, bottom, left, right = pads
        # Symmetric pads go into the conv itself (no extra copy); asymmetric ones need an F.pad first.
        self.inner = (top, left) if (top, left) == (bottom, right) else (0, 0)
        self.outer = None if (top, left) == (bottom, right) else (left, right, top, bottom)

    def forward(self, x: Tensor) -> Tensor:
        if self.outer is not None:
            x = F.pad(x, self.outer)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.inner, self.dilation, self.groups)
        return _activate(y, self.activation)


class _MaxPool(nn.Module):
    def __init__(
        self,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        pads: tuple[int, int, int, int],
        activation: int,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        top, bottom, left, right = pads
        self.outer = (left, right, top, bottom) if any(pads) else None

    def forward(self, x: Tensor) -> Tensor:
        if self.outer is not None:  # TFLite ignores padded cells, i.e. pads with -inf
            x = F.pad(x, self.outer, value=float("-inf"))
        return _activate(F.max_pool2d(x, self.kernel, self.stride), self.activation)


class _PReLU(nn.Module):
    def __init__(self, alpha: Tensor) -> None:
        super().__init__()
        self.register_buffer("alpha", alpha)

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.alpha)


class _Activation(nn.Module):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def forward(self, x: Tensor) -> Tensor:
        return _activate(x, self.code)


class _Binary(nn.Module):
    """ADD / MUL of two runtime tensors, or of one runtime tensor and a load-time constant."""

    def __init__(
        self, fn: Callable[[Tensor, Tensor], Tensor], constant: Tensor | None, activation: int
    ) -> None:
        super().__init__()
        self.fn, self.activation = fn, activation
        self.register_buffer("constant", constant)

    def forward(self, a: Tensor, b: Tensor | None = None) -> Tensor:
        return _activate(self.fn(a, self.constant if b is None else b), self.activation)


class _Pad(nn.Module):
    def __init__(self, pads: tuple[int, ...]) -> None:
        super().__init__()
        self.pads = pads

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pads)


class _Reshape(nn.Module):
    """RESHAPE in TFLite's (NHWC) element order; the batch dimension is carried through."""

    def __init__(self, from_4d: bool, tail: tuple[int, ...], to_4d: bool) -> None:
        super().__init__()
        self.from_4d, self.tail, self.to_4d = from_4d, tail, to_4d

    def forward(self, x: Tensor) -> Tensor:
        if self.from_4d:
            x = x.permute(0, 2, 3, 1)
        y = x.reshape(x.shape[0], *self.tail)
        return y.permute(0, 3, 1, 2) if self.to_4d else y


class _Concat(nn.Module):
    def __init__(self, dim: int, activation: int) -> None:
        super().__init__()
        self.dim, self.activation = dim, activation

    def forward(self, *xs: Tensor) -> Tensor:
        return _activate(torch.cat(xs, self.dim), self.activation)


class _Slice(nn.Module):
    """STRIDED_SLICE with constant bounds, already mapped to the torch layout."""

    def __init__(self, bounds: tuple[tuple[int | None, int | None, int], ...]) -> None:
        super().__init__()
        self.bounds = bounds

    def forward(self, x: Tensor) -> Tensor:
        return x[tuple(slice(*b) for b in self.bounds)]


class _Landmarks2TransformMatrix(nn.Module):
    """MediaPipe ``Landmarks2TransformMatrix`` v2: (B, N, 3) landmarks -> (B, 4, 4) crop transform.

    The crop is the bounding box of a landmark subset in a frame rotated so that the line from the
    left to the right rotation landmark is at ``target_rotation_radians``, scaled by ``scale_x/y``.
    The matrix maps output-crop pixel coordinates to input coordinates.
    """

    def __init__(self, options: dict) -> None:
        super().__init__()
        self.register_buffer("subset", torch.tensor(options["subset_idxs"], dtype=torch.long))
        self.left, self.right = int(options["left_rotation_idx"]), int(options["right_rotation_idx"])
        self.target = float(options["target_rotation_radians"])
        self.out_w, self.out_h = int(options["output_width"]), int(options["output_height"])
        self.scale_x, self.scale_y = float(options["scale_x"]), float(options["scale_y"])

    def forward(self, landmarks: Tensor) -> Tensor:
        delta = landmarks[:, self.right, :2] - landmarks[:, self.left, :2]
        rotation = self.target - torch.atan2(delta[:, 1], delta[:, 0])
        cos, sin = torch.cos(rotation)[:, None], torch.sin(rotation)[:, None]
        pts = landmarks.index_select(1, self.subset)
        x, y = pts[..., 0], pts[..., 1]
        rx, ry = cos * x - sin * y, sin * x + cos * y
        rx_min, rx_max, ry_min, ry_max = rx.amin(1), rx.amax(1), ry.amin(1), ry.amax(1)
        cos, sin = cos[:, 0], sin[:, 0]
        mid_x, mid_y = (rx_min + rx_max) / 2, (ry_min + ry_max) / 2
        centre_x, centre_y = cos * mid_x + sin * mid_y, cos * mid_y - sin * mid_x  # rotate back by -rotation
        scale_x = self.scale_x * (rx_max - rx_min) / self.out_w
        scale_y = self.scale_y * (ry_max - ry_min) / self.out_h
        a00, a01, a10, a11 = cos * scale_x, sin * scale_y, -sin * scale_x, cos * scale_y
        tx = centre_x - (a00 * self.out_w + a01 * self.out_h) / 2
        ty = centre_y - (a10 * self.out_w + a11 * self.out_h) / 2
        zero, one = torch.zeros_like(a00), torch.ones_like(a00)
        rows = (a00, a01, zero, tx, a10, a11, zero, ty, zero, zero, one, zero, zero, zero, zero, one)
        return torch.stack(rows, 1).view(-1, 4, 4)


class _TransformTensorBilinear(nn.Module):
    """MediaPipe ``TransformTensorBilinear`` v2: resample a feature map through a (B, 4, 4) transform.

    Output pixel centres (x+0.5, y+0.5) are mapped by the matrix, shifted back by half a pixel and
    sampled bilinearly; samples whose position falls outside [0, W-1] x [0, H-1] are zero.
    """

    def __init__(self, out_h: int, out_w: int, in_h: int, in_w: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.arange(out_h) + 0.5, torch.arange(out_w) + 0.5, indexing="ij")
        self.register_buffer("centres", torch.stack((xs, ys), -1).reshape(-1, 2))
        self.out_h, self.out_w, self.in_h, self.in_w = out_h, out_w, in_h, in_w

    def forward(self, features: Tensor, matrix: Tensor) -> Tensor:
        pos = self.centres @ matrix[:, :2, :2].transpose(1, 2) + (matrix[:, None, :2, 3] - 0.5)
        px, py = pos[..., 0], pos[..., 1]
        inside = (px >= 0) & (px <= self.in_w - 1) & (py >= 0) & (py <= self.in_h - 1)
        grid = torch.stack((px * (2 / (self.in_w - 1)) - 1, py * (2 / (self.in_h - 1)) - 1), -1)
        grid = grid.view(-1, self.out_h, self.out_w, 2)
        # contiguous(): CPU grid_sample returns NaNs on channels_last fp16/bf16 input (torch 2.13).
        out = F.grid_sample(
            features.contiguous(), grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return out * inside.view(-1, 1, self.out_h, self.out_w).to(out.dtype)


class _TransformLandmarks(nn.Module):
    """MediaPipe ``TransformLandmarks`` v2: apply a (B, 4, 4) transform to (B, N, 2|3) points' x, y."""

    def forward(self, landmarks: Tensor, matrix: Tensor) -> Tensor:
        xy = landmarks[..., :2] @ matrix[:, :2, :2].transpose(1, 2) + matrix[:, None, :2, 3]
        return torch.cat((xy, landmarks[..., 2:]), -1)


class _GraphReader:
    """Reads one subgraph: static shapes, constants (fp16 dequantised) and per-op module builders."""

    def __init__(self, model: tflite.Model) -> None:
        self.graph = model.Subgraphs(0)
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
                raw = buffer.DataAsNumpy().tobytes()
                self.constants[i] = np.frombuffer(raw, dtype).reshape(self.shape(i)).copy()

    def shape(self, index: int) -> tuple[int, ...]:
        tensor = self.graph.Tensors(index)
        return tuple(int(v) for v in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    def name(self, index: int) -> str:
        return self.graph.Tensors(index).Name().decode()

    def float_const(self, index: int) -> np.ndarray:
        return self.constants[index].astype(np.float32)

    @staticmethod
    def options(op: tflite.Operator, cls: type) -> object:
        table, opts = op.BuiltinOptions(), cls()
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
        return _Conv(weight_t, bias, stride, dilation, groups, pads, _checked_activation(o))

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
        return _MaxPool(
            kernel, stride, self.pads(o.Padding(), (h, w), kernel, stride), _checked_activation(o)
        )

    def prelu(self, op: tflite.Operator) -> nn.Module:
        alpha = self.float_const(int(op.Inputs(1)))
        if alpha.size != alpha.shape[-1] or len(self.shape(int(op.Inputs(0)))) != 4:
            raise NotImplementedError(f"PRELU with non per-channel alpha {alpha.shape}")
        return _PReLU(torch.from_numpy(alpha.reshape(-1)))

    def binary(self, op: tflite.Operator, fn: Callable[[Tensor, Tensor], Tensor], cls: type) -> nn.Module:
        a, b = int(op.Inputs(0)), int(op.Inputs(1))
        constant = None
        if a in self.constants or b in self.constants:
            runtime, const = (b, a) if a in self.constants else (a, b)
            value = self.float_const(const)
            is_4d = len(self.shape(runtime)) == 4
            constant = _nchw_constant(value) if is_4d and value.size > 1 else torch.from_numpy(value)
        elif self.shape(a) != self.shape(b):  # NHWC broadcasting would not carry over to NCHW
            raise NotImplementedError(f"broadcasting {self.shape(a)} with {self.shape(b)}")
        return _Binary(fn, constant, _checked_activation(self.options(op, cls)))

    def pad(self, op: tflite.Operator) -> nn.Module:
        pads = self.constants[int(op.Inputs(1))].astype(int).tolist()
        if len(pads) == 4:  # NHWC -> NCHW
            if pads[0] != [0, 0]:
                raise NotImplementedError("PAD along the batch axis")
            pads = [pads[0], pads[3], pads[1], pads[2]]
        return _Pad(tuple(int(v) for pair in reversed(pads[1:]) for v in pair))

    def reshape(self, op: tflite.Operator) -> nn.Module:
        src, dst = self.shape(int(op.Inputs(0))), self.shape(int(op.Outputs(0)))
        if src[:1] != (1,) or dst[:1] != (1,):
            raise NotImplementedError(f"RESHAPE {src} -> {dst} does not keep the batch axis first")
        return _Reshape(len(src) == 4, dst[1:], len(dst) == 4)

    def concat(self, op: tflite.Operator) -> nn.Module:
        o = self.options(op, tflite.ConcatenationOptions)
        rank = len(self.shape(int(op.Outputs(0))))
        axis = o.Axis() % rank
        if axis == 0:
            raise NotImplementedError("CONCATENATION along the batch axis")
        return _Concat(_NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis, _checked_activation(o))

    def strided_slice(self, op: tflite.Operator) -> nn.Module:
        o = self.options(op, tflite.StridedSliceOptions)
        if o.EllipsisMask() or o.NewAxisMask() or o.ShrinkAxisMask():
            raise NotImplementedError("STRIDED_SLICE with ellipsis/new-axis/shrink masks")
        shape = self.shape(int(op.Inputs(0)))
        begin, end, step = (self.constants[int(op.Inputs(k))].tolist() for k in (1, 2, 3))
        bounds: list[tuple[int | None, int | None, int]] = []
        for axis, dim in enumerate(shape):
            b = None if o.BeginMask() >> axis & 1 else begin[axis]
            e = None if o.EndMask() >> axis & 1 else end[axis]
            full = range(dim)[slice(b, e, step[axis])] == range(dim)
            if axis == 0 and not full:
                raise NotImplementedError("STRIDED_SLICE along the batch axis")
            bounds.append((None, None, 1) if full else (b, e, step[axis]))
        if len(shape) == 4:
            bounds = [bounds[a] for a in (0, 3, 1, 2)]
        return _Slice(tuple(bounds))

    def custom(self, op: tflite.Operator, name: str) -> nn.Module:
        options = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy())) if op.CustomOptionsLength() else {}
        if name == "Landmarks2TransformMatrix":
            return _Landmarks2TransformMatrix(options)
        if name == "TransformTensorBilinear":
            _, in_h, in_w, _ = self.shape(int(op.Inputs(0)))
            return _TransformTensorBilinear(
                int(options["output_height"]), int(options["output_width"]), in_h, in_w
            )
        if name == "TransformLandmarks":
            return _TransformLandmarks()
        raise NotImplementedError(f"custom op {name}")


def _checked_activation(options: object) -> int:
    code = int(options.FusedActivationFunction())
    if code not in (_ACT_NONE, _ACT_RELU, _ACT_RELU_N1_TO_1, _ACT_RELU6):
        raise NotImplementedError(f"fused activation {code}")
    return code


class TFLiteModule(nn.Module):
    """A TFLite graph as a fixed list of torch modules; ``forward(x NCHW) -> outputs in TFLite shapes``.

    ``wiring[k] = (input tensor ids, output tensor id, ids released after op k)``: tensors are freed
    after their last use so eager inference keeps only live activations. All ids are Python ints.
    """

    def __init__(
        self,
        ops: list[nn.Module],
        wiring: list[tuple[tuple[int, ...], int, tuple[int, ...]]],
        input_id: int,
        output_ids: tuple[int, ...],
        output_4d: tuple[bool, ...],
        num_tensors: int,
        input_shape: tuple[int, ...],
        output_names: tuple[str, ...],
    ) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.wiring, self.input_id, self.output_ids = wiring, input_id, output_ids
        self.output_4d, self.num_tensors = output_4d, num_tensors
        n, h, w, c = input_shape
        self.input_shape = (n, c, h, w)  # NCHW, batch 1
        self.output_names = output_names

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        env: list[Tensor | None] = [None] * self.num_tensors
        # channels_last is TFLite's own NHWC in memory: oneDNN's fast conv path on CPU (about 2x over
        # NCHW-contiguous here) and cuDNN's tensor-core layout on GPU; the NCHW view keeps torch's API.
        env[self.input_id] = x.contiguous(memory_format=torch.channels_last)
        for op, (inputs, output, release) in zip(self.ops, self.wiring, strict=True):
            env[output] = op(*[env[i] for i in inputs])
            for i in release:
                env[i] = None
        return tuple(
            env[i].permute(0, 2, 3, 1) if is_4d else env[i]
            for i, is_4d in zip(self.output_ids, self.output_4d, strict=True)
        )


def load_tflite(path: Path) -> TFLiteModule:
    """Parse a .tflite file and rebuild its first subgraph as a torch module (fp32, CPU).

    Raises NotImplementedError naming the first op (or option) outside the supported set.
    """
    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    reader, graph = _GraphReader(model), model.Subgraphs(0)
    if graph.InputsLength() != 1:
        raise NotImplementedError(f"{path.name}: graphs with {graph.InputsLength()} inputs")
    builders: dict[str, Callable[[tflite.Operator], nn.Module]] = {
        "CONV_2D": lambda op: reader.conv(op, depthwise=False),
        "DEPTHWISE_CONV_2D": lambda op: reader.conv(op, depthwise=True),
        "MAX_POOL_2D": reader.max_pool,
        "PRELU": reader.prelu,
        "RELU": lambda op: _Activation(_ACT_RELU),
        "RELU6": lambda op: _Activation(_ACT_RELU6),
        "ADD": lambda op: reader.binary(op, torch.add, tflite.AddOptions),
        "MUL": lambda op: reader.binary(op, torch.mul, tflite.MulOptions),
        "PAD": reader.pad,
        "RESHAPE": reader.reshape,
        "CONCATENATION": reader.concat,
        "STRIDED_SLICE": reader.strided_slice,
    }
    ops: list[nn.Module] = []
    wiring: list[tuple[tuple[int, ...], int]] = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        inputs = tuple(int(i) for i in op.InputsAsNumpy() if i >= 0)
        output = int(op.Outputs(0))
        if name == "DEQUANTIZE":
            if inputs[0] not in reader.constants:
                raise NotImplementedError(f"{path.name}: DEQUANTIZE of a runtime tensor")
            reader.constants[output] = reader.float_const(inputs[0])
            continue
        if op.OutputsLength() != 1:
            raise NotImplementedError(f"{path.name}: {name} with {op.OutputsLength()} outputs")
        if name == "CUSTOM":
            module = reader.custom(op, code.CustomCode().decode())
        elif name in builders:
            module = builders[name](op)
        else:
            raise NotImplementedError(f"{path.name}: TFLite op {name}")
        ops.append(module)
        wiring.append((tuple(i for i in inputs if i not in reader.constants), output))
    output_ids = tuple(int(graph.Outputs(k)) for k in range(graph.OutputsLength()))
    return TFLiteModule(
        ops,
        _with_releases(wiring, set(output_ids)),
        int(graph.Inputs(0)),
        output_ids,
        tuple(len(reader.shape(i)) == 4 for i in output_ids),
        graph.TensorsLength(),
        reader.shape(int(graph.Inputs(0))),
        tuple(reader.name(i) for i in output_ids),
    )


def _with_releases(
    wiring: list[tuple[tuple[int, ...], int]], keep: set[int]
) -> list[tuple[tuple[int, ...], int, tuple[int, ...]]]:
    """Attach to each op the tensors whose last reader it is (graph outputs are never released)."""
    last_use = {i: k for k, (inputs, _) in enumerate(wiring) for i in inputs}
    return [
        (inputs, output, tuple(sorted({i for i in inputs if last_use[i] == k and i not in keep})))
        for k, (inputs, output) in enumerate(wiring)
    ]
