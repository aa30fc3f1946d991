"""Torch modules for TFLite's builtin ops, as ``models/nets/tflite/loader.py`` instantiates them.

Each module's constructor takes arguments already resolved at load time (weights in torch layout,
axes mapped to the layout the tensor is kept in, pads made explicit); ``forward`` is then a fixed
sequence of torch calls whose arguments are plain Python ints and floats, which keeps
``torch.compile(fullgraph=True)`` free of graph breaks.

Layout: a 4-D activation is kept NCHW (TFLite's NHWC permuted by ``NHWC_TO_NCHW_AXIS``); tensors of
any other rank are kept in TFLite's own axis order. Dimension 0 is always the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3  # tflite.ActivationFunctionType
NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # TFLite axis -> torch axis of the same 4-D tensor
NCHW_TO_NHWC_AXIS = (0, 3, 1, 2)  # torch axis -> TFLite axis of the same 4-D tensor


def activate(x: Tensor, code: int) -> Tensor:
    """A TFLite fused activation; ``code`` is a Python int validated at load, so this is static."""
    if code == ACT_RELU:
        return F.relu(x)
    if code == ACT_RELU6:
        return F.hardtanh(x, 0.0, 6.0)
    if code == ACT_RELU_N1_TO_1:
        return F.hardtanh(x, -1.0, 1.0)
    return x


def nchw_constant(value: np.ndarray) -> Tensor:
    """A constant broadcast against a 4-D NHWC tensor, reshaped to broadcast against its NCHW twin."""
    value = value.reshape((1,) * (4 - value.ndim) + value.shape)
    return torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2)))


def squared_difference(a: Tensor, b: Tensor) -> Tensor:
    diff = a - b
    return diff * diff


class Conv(nn.Module):
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
        return activate(y, self.activation)


class MaxPool(nn.Module):
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
        return activate(F.max_pool2d(x, self.kernel, self.stride), self.activation)


class PReLU(nn.Module):
    def __init__(self, alpha: Tensor) -> None:
        super().__init__()
        self.register_buffer("alpha", alpha)

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.alpha)


class Activation(nn.Module):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def forward(self, x: Tensor) -> Tensor:
        return activate(x, self.code)


class Unary(nn.Module):
    """An element-wise op without options: LOGISTIC, SQRT, RSQRT, NEG."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class Binary(nn.Module):
    """ADD / SUB / MUL / DIV / SQUARED_DIFFERENCE of two runtime tensors, or of one runtime tensor and
    a load-time constant (``constant_first`` keeps the operand order of the non-commutative ones)."""

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor], Tensor],
        constant: Tensor | None,
        activation: int,
        constant_first: bool = False,
    ) -> None:
        super().__init__()
        self.fn, self.activation, self.constant_first = fn, activation, constant_first
        self.register_buffer("constant", constant)

    def forward(self, a: Tensor, b: Tensor | None = None) -> Tensor:
        if b is None:
            a, b = (self.constant, a) if self.constant_first else (a, self.constant)
        return activate(self.fn(a, b), self.activation)


class FullyConnected(nn.Module):
    """FULLY_CONNECTED of a 2-D (batch, features) input: weights (out, in) as TFLite stores them."""

    def __init__(self, weight: Tensor, bias: Tensor | None, activation: int) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return activate(F.linear(x, self.weight, self.bias), self.activation)


class Reduce(nn.Module):
    """MEAN / SUM over constant axes (never the batch axis). A 4-D input that loses its rank goes
    back to TFLite's axis order first, so the result is laid out as TFLite's is."""

    def __init__(
        self, fn: Callable[..., Tensor], dims: tuple[int, ...], keepdim: bool, to_nhwc: bool
    ) -> None:
        super().__init__()
        self.fn, self.dims, self.keepdim, self.to_nhwc = fn, dims, keepdim, to_nhwc

    def forward(self, x: Tensor) -> Tensor:
        if self.to_nhwc:
            x = x.permute(0, 2, 3, 1)
        return self.fn(x, dim=self.dims, keepdim=self.keepdim)


class Transpose(nn.Module):
    """TRANSPOSE with a constant permutation, already composed with the NHWC <-> NCHW layout."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(self.dims)


class Pad(nn.Module):
    def __init__(self, pads: tuple[int, ...]) -> None:
        super().__init__()
        self.pads = pads

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pads)


class Reshape(nn.Module):
    """RESHAPE in TFLite's (NHWC) element order; the batch dimension is carried through."""

    def __init__(self, from_4d: bool, tail: tuple[int, ...], to_4d: bool) -> None:
        super().__init__()
        self.from_4d, self.tail, self.to_4d = from_4d, tail, to_4d

    def forward(self, x: Tensor) -> Tensor:
        if self.from_4d:
            x = x.permute(0, 2, 3, 1)
        y = x.reshape(x.shape[0], *self.tail)
        return y.permute(0, 3, 1, 2) if self.to_4d else y


class Concat(nn.Module):
    """CONCATENATION of runtime tensors and load-time constants (e.g. a learned class token).

    ``parts`` lists, in input order, ``None`` for the next runtime input or the index of a constant
    buffer ``const{k}``; constants (batch 1) are expanded to the runtime batch.
    """

    def __init__(
        self, dim: int, activation: int, parts: tuple[int | None, ...], constants: list[Tensor]
    ) -> None:
        super().__init__()
        self.dim, self.activation, self.parts = dim, activation, parts
        for k, value in enumerate(constants):
            self.register_buffer(f"const{k}", value)

    def forward(self, *xs: Tensor) -> Tensor:
        runtime = iter(xs)
        batch = xs[0].shape[0]
        tensors = []
        for part in self.parts:
            if part is None:
                tensors.append(next(runtime))
            else:
                value = getattr(self, f"const{part}")
                tensors.append(value.expand(batch, *value.shape[1:]))
        return activate(torch.cat(tensors, self.dim), self.activation)


class Slice(nn.Module):
    """STRIDED_SLICE with constant bounds, already mapped to the torch layout; an int bound picks
    one index and drops the axis (TFLite's shrink mask)."""

    def __init__(self, bounds: tuple[tuple[int | None, int | None, int] | int, ...]) -> None:
        super().__init__()
        self.bounds = bounds

    def forward(self, x: Tensor) -> Tensor:
        return x[tuple(b if isinstance(b, int) else slice(*b) for b in self.bounds)]


class ResizeBilinear(nn.Module):
    """RESIZE_BILINEAR to a fixed size: TFLite's half-pixel centres are torch's align_corners=False."""

    def __init__(self, size: tuple[int, int], align_corners: bool) -> None:
        super().__init__()
        self.size, self.align_corners = size, align_corners

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


class DepthToSpace(nn.Module):
    """DEPTH_TO_SPACE on an NCHW tensor with TFLite's channel order: input channel (i * b + j) * C + c
    lands at output channel c, offset (i, j) in its b x b block (torch's pixel_shuffle puts c first)."""

    def __init__(self, block: int) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        n, channels, height, width = x.shape
        b = self.block
        blocks = x.reshape(n, b, b, channels // (b * b), height, width).permute(0, 3, 4, 1, 5, 2)
        return blocks.reshape(n, channels // (b * b), height * b, width * b)
