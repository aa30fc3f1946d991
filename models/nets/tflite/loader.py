"""Rebuild a TFLite flatbuffer as a native torch ``nn.Module`` (the op set of MediaPipe's face nets).

Why rebuild instead of running TFLite: one runtime for every stage, batches of any size, any torch
device and dtype, and ``torch.compile``. The flatbuffer is parsed once with the ``tflite`` schema
package; every weight is converted at load time (fp16 constants dequantised to fp32, sparse ones
densified, kernels transposed to torch's OIHW layout, TFLite SAME padding resolved to explicit pads,
axes mapped to the torch layout), so ``forward`` is a fixed sequence of torch calls whose arguments
are plain Python ints and floats. The parsing lives in ``models/nets/tflite/reader.py``, the op modules in
``models/nets/tflite/ops.py`` (builtins) and ``models/nets/tflite/custom_ops.py`` (MediaPipe's custom ops).

Layout: every 4-D activation runs NCHW internally (torch's native conv layout); other ranks keep
TFLite's axis order. Graph outputs come back in TFLite's shapes (NHWC for 4-D) with the batch
dimension equal to the input's; the one exception is a batch axis of one that a graph squeezes away
at its very end (the blendshape net's ``(52,)``): batched, that axis is kept, ``(B, 52)``.
"""

from __future__ import annotations

from pathlib import Path

import tflite
import torch
from torch import Tensor, nn

from face3d.models.nets.tflite.ops import NCHW_TO_NHWC_AXIS
from face3d.models.nets.tflite.reader import GraphReader


class TFLiteModule(nn.Module):
    """A TFLite graph as a fixed list of torch modules; ``forward(x) -> outputs in TFLite shapes``.

    ``x`` is NCHW when the graph's input is 4-D, else in TFLite's own shape, batch first.
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
        self.input_4d = len(input_shape) == 4
        # NCHW, batch 1, for image nets; TFLite's shape otherwise
        self.input_shape = tuple(input_shape[a] for a in NCHW_TO_NHWC_AXIS) if self.input_4d else input_shape
        self.output_names = output_names

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        env: list[Tensor | None] = [None] * self.num_tensors
        # channels_last is TFLite's own NHWC in memory: oneDNN's fast conv path on CPU (about 2x over
        # NCHW-contiguous here) and cuDNN's tensor-core layout on GPU; the NCHW view keeps torch's API.
        env[self.input_id] = x.contiguous(memory_format=torch.channels_last) if self.input_4d else x
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
    reader, graph = GraphReader(model), model.Subgraphs(0)
    if graph.InputsLength() != 1:
        raise NotImplementedError(f"{path.name}: graphs with {graph.InputsLength()} inputs")
    builders = reader.builders()
    ops: list[nn.Module] = []
    wiring: list[tuple[tuple[int, ...], int]] = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        inputs = tuple(int(i) for i in op.InputsAsNumpy() if i >= 0)
        output = int(op.Outputs(0))
        if name in ("DEQUANTIZE", "DENSIFY"):  # of constants: resolved here, at load
            if inputs[0] not in reader.constants:
                raise NotImplementedError(f"{path.name}: {name} of a runtime tensor")
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
