"""models/nets/tflite/ against the reference TFLite interpreter (ai-edge-litert), on random and real inputs.

The reference interpreter does not know MediaPipe's three custom ops, so for the 478-point model the
test rewrites the flatbuffer: the custom ops are removed, their outputs become extra graph inputs and
their inputs extra graph outputs, and the ops are evaluated in NumPy between interpreter runs,
following MediaPipe's reference kernels step by step (a second, loop-level implementation that
shares no code with the torch one). Interpreter runs repeat until the fed values stop changing.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from flatbuffers import flexbuffers
from PIL import Image

from face3d.models.nets.assets import asset_path
from face3d.models.nets.tflite.loader import load_tflite
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo

DETECTOR, MESH_468, MESH_478 = (
    "face_detection_short_range.tflite",
    "face_landmark.tflite",
    "face_landmark_with_attention.tflite",
)
INPUT_RANGE = {DETECTOR: (-1.0, 1.0), MESH_468: (0.0, 1.0), MESH_478: (0.0, 1.0)}
# Face crops of the test photos as (centre x, centre y, side) fractions of the image, for the landmark nets.
FACE_CROPS = {
    "astronaut": (0.44, 0.24, 0.30),
    "face_001": (0.44, 0.29, 0.35),
    "image00021": (0.50, 0.55, 0.40),
    "merge_action": (0.48, 0.58, 0.45),
}
TOLERANCE = 1e-3


def _image_inputs(model: str, size: int) -> np.ndarray:
    """(4, size, size, 3) float32 in the model's range: whole photos (detector) or face crops (meshes)."""
    lo, hi = INPUT_RANGE[model]
    batch = []
    for name in PHOTO_NAMES:
        image = Image.fromarray(photo(name))
        if model != DETECTOR:
            cx, cy, side = FACE_CROPS[name]
            w, h = image.size
            half = side * max(w, h) / 2
            image = image.crop((cx * w - half, cy * h - half, cx * w + half, cy * h + half))
        pixels = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255
        batch.append(lo + (hi - lo) * pixels)
    return np.stack(batch)


def _random_inputs(model: str, size: int, count: int = 3) -> np.ndarray:
    lo, hi = INPUT_RANGE[model]
    return np.random.default_rng(1234).uniform(lo, hi, (count, size, size, 3)).astype(np.float32)


# --- NumPy transcription of MediaPipe's custom kernels (batch of one, as the interpreter runs) --------


def _np_landmarks_to_matrix(landmarks: np.ndarray, opts: dict) -> np.ndarray:
    pts = landmarks.reshape(-1, 3).astype(np.float64)
    left, right = pts[opts["left_rotation_idx"]], pts[opts["right_rotation_idx"]]
    r = opts["target_rotation_radians"] - np.arctan2(right[1] - left[1], right[0] - left[0])

    def rot3(a: float) -> np.ndarray:
        return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])

    subset = np.array([[*pts[i, :2], 1.0] for i in opts["subset_idxs"]])
    rotated = subset @ rot3(r).T
    lo, hi = rotated.min(0), rotated.max(0)
    centre = rot3(-r) @ np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 1.0])
    ow, oh = opts["output_width"], opts["output_height"]

    def affine(m2: np.ndarray, t: tuple[float, float]) -> np.ndarray:
        m = np.eye(4)
        m[:2, :2], m[:2, 3] = m2, t
        return m

    shift = affine(np.eye(2), (centre[0], centre[1]))
    rotation = affine(rot3(-r)[:2, :2], (0, 0))
    scale = affine(
        np.diag([opts["scale_x"] * (hi[0] - lo[0]) / ow, opts["scale_y"] * (hi[1] - lo[1]) / oh]), (0, 0)
    )
    shift2 = affine(np.eye(2), (-ow / 2, -oh / 2))
    return (shift @ rotation @ scale @ shift2).astype(np.float32).reshape(1, 4, 4)


def _np_transform_bilinear(features: np.ndarray, matrix: np.ndarray, opts: dict) -> np.ndarray:
    _, h, w, c = features.shape
    m = matrix.reshape(4, 4).astype(np.float64)
    xt, yt = m[0].copy(), m[1].copy()
    xt[3] += xt[0] * 0.5 + xt[1] * 0.5 - 0.5
    yt[3] += yt[0] * 0.5 + yt[1] * 0.5 - 0.5
    out = np.zeros((1, opts["output_height"], opts["output_width"], c), np.float32)

    def read(y: int, x: int) -> np.ndarray:
        return features[0, y, x] if 0 <= y < h and 0 <= x < w else np.zeros(c, np.float32)

    for oy in range(opts["output_height"]):
        for ox in range(opts["output_width"]):
            tx, ty = xt @ (ox, oy, 0, 1), yt @ (ox, oy, 0, 1)
            if tx < 0 or tx > w - 1 or ty < 0 or ty > h - 1:
                continue
            fx, fy = int(np.floor(tx)), int(np.floor(ty))
            ax, ay = tx - fx, ty - fy
            upper = (1 - ax) * read(fy, fx) + ax * read(fy, fx + 1)
            lower = (1 - ax) * read(fy + 1, fx) + ax * read(fy + 1, fx + 1)
            out[0, oy, ox] = ay * lower + (1 - ay) * upper
    return out


def _np_transform_landmarks(landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    m = matrix.reshape(4, 4)
    out = landmarks.copy()
    for i in range(landmarks.shape[1]):
        x, y = landmarks[0, i, 0], landmarks[0, i, 1]
        out[0, i, 0] = m[0, 0] * x + m[0, 1] * y + m[0, 3]
        out[0, i, 1] = m[1, 0] * x + m[1, 1] * y + m[1, 3]
    return out


class _SplitReference:
    """The interpreter on a copy of the model without its custom ops, which run in NumPy instead."""

    def __init__(self, model: str) -> None:
        flat = schema.ModelT.InitFromPackedBuf(
            bytearray(asset_path(model, default_cache_dir()).read_bytes()), 0
        )
        graph = flat.subgraphs[0]
        codes = [c.customCode.decode() if c.customCode else None for c in flat.operatorCodes]
        self.custom = [
            (
                codes[op.opcodeIndex],
                [int(i) for i in op.inputs],
                int(op.outputs[0]),
                flexbuffers.Loads(bytes(op.customOptions)) if op.customOptions is not None else {},
            )
            for op in graph.operators
            if codes[op.opcodeIndex]
        ]
        graph.operators = [op for op in graph.operators if not codes[op.opcodeIndex]]
        self.n_outputs = len(graph.outputs)
        self.fed = [out for _, _, out, _ in self.custom]
        self.read = sorted({i for _, ins, _, _ in self.custom for i in ins} - set(self.fed))
        graph.inputs = [int(graph.inputs[0]), *self.fed]
        graph.outputs = [*(int(i) for i in graph.outputs), *self.read]
        builder = flatbuffers.Builder(0)
        builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
        self.interpreter = Interpreter(model_content=bytes(builder.Output()))
        self.interpreter.allocate_tensors()
        details = self.interpreter.get_input_details()
        self.input_index = [d["index"] for d in details]
        self.shapes = {d["index"]: d["shape"] for d in details}
        self.output_index = [d["index"] for d in self.interpreter.get_output_details()]

    def _custom(self, name: str, args: list[np.ndarray], opts: dict) -> np.ndarray:
        if name == "Landmarks2TransformMatrix":
            return _np_landmarks_to_matrix(args[0], opts)
        if name == "TransformTensorBilinear":
            return _np_transform_bilinear(args[0], args[1], opts)
        assert name == "TransformLandmarks", name
        return _np_transform_landmarks(args[0], args[1])

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        feeds = {i: np.zeros(self.shapes[i], np.float32) for i in self.fed}
        for _ in range(1 + len(self.custom)):  # enough runs for the longest custom-op chain
            interp = self.interpreter
            interp.set_tensor(self.input_index[0], x)
            for i in self.fed:
                interp.set_tensor(i, feeds[i])
            interp.invoke()
            outputs = [interp.get_tensor(i) for i in self.output_index]
            values = dict(zip(self.read, outputs[self.n_outputs :], strict=True))
            previous = dict(feeds)
            for name, ins, out, opts in self.custom:
                values[out] = feeds[out] = self._custom(name, [values[i] for i in ins], opts)
            if all(np.array_equal(previous[i], feeds[i]) for i in self.fed):
                return outputs[: self.n_outputs]
        raise AssertionError("custom-op values did not settle")


@cache
def _reference(model: str) -> _SplitReference | Interpreter:
    if model == MESH_478:
        return _SplitReference(model)
    interpreter = Interpreter(model_path=str(asset_path(model, default_cache_dir())))
    interpreter.allocate_tensors()
    return interpreter


def _run_reference(model: str, batch: np.ndarray) -> list[np.ndarray]:
    """Per-sample reference outputs, concatenated along the batch axis."""
    ref = _reference(model)
    per_sample = []
    for x in batch:
        if isinstance(ref, _SplitReference):
            per_sample.append(ref(x[None]))
            continue
        ref.set_tensor(ref.get_input_details()[0]["index"], x[None])
        ref.invoke()
        per_sample.append([ref.get_tensor(d["index"]) for d in ref.get_output_details()])
    return [np.concatenate(outs) for outs in zip(*per_sample, strict=True)]


@cache
def _torch_model(model: str) -> torch.nn.Module:
    return load_tflite(asset_path(model, default_cache_dir())).eval()


def _run_torch(module: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        return [o.numpy() for o in module(torch.from_numpy(batch).permute(0, 3, 1, 2))]


@pytest.mark.parametrize("model", [DETECTOR, MESH_468, MESH_478])
@pytest.mark.parametrize("inputs", ["random", "photos"])
def test_matches_tflite_batched_and_per_sample(model: str, inputs: str) -> None:
    module = _torch_model(model)
    size = module.input_shape[2]
    batch = _random_inputs(model, size) if inputs == "random" else _image_inputs(model, size)
    expected = _run_reference(model, batch)
    batched = _run_torch(module, batch)
    assert [o.shape for o in batched] == [e.shape for e in expected]
    for got, want in zip(batched, expected, strict=True):
        assert np.abs(got - want).max() <= TOLERANCE
    singles = [_run_torch(module, batch[i : i + 1]) for i in range(len(batch))]
    for k, got in enumerate(batched):
        np.testing.assert_allclose(np.concatenate([s[k] for s in singles]), got, rtol=1e-5, atol=1e-4)


def test_output_names_follow_tflite_order() -> None:
    assert _torch_model(MESH_478).output_names == (
        "output_mesh_identity",
        "output_lips",
        "output_left_eye",
        "output_right_eye",
        "output_left_iris",
        "output_right_iris",
        "conv_faceflag",
    )
    assert _torch_model(DETECTOR).input_shape == (1, 3, 128, 128)


def test_faces_are_found_on_photos() -> None:
    """The rebuilt landmark net is confident on real face crops (a sanity check of the whole graph)."""
    module = _torch_model(MESH_478)
    face_logit = _run_torch(module, _image_inputs(MESH_478, 192))[-1].reshape(-1)
    assert (face_logit > 0).all()


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, TOLERANCE), (torch.float16, 2.0)])
def test_other_dtypes_stay_close(dtype: torch.dtype, tolerance: float) -> None:
    """Weights are buffers, so .to(dtype) converts all of them (custom-op constants included).

    float64 must keep full parity; float16 must stay within 2 px of the 192-px crop (CPU fp16 convs
    accumulate in half precision; the lips, refined inside an attention crop, drift most: ~1 px).
    """
    module = load_tflite(asset_path(MESH_478, default_cache_dir())).eval().to(dtype)
    batch = _image_inputs(MESH_478, 192)[:1]  # fp16 and fp64 convs are slow on CPU
    with torch.inference_mode():
        got = module(torch.from_numpy(batch).to(dtype).permute(0, 3, 1, 2))
    for out, want in zip(got, _run_reference(MESH_478, batch), strict=True):
        assert out.dtype == dtype
        assert np.abs(out.double().numpy() - want).max() <= tolerance


def test_unsupported_op_is_named(tmp_path: Path) -> None:
    flat = schema.ModelT.InitFromPackedBuf(
        bytearray(asset_path(DETECTOR, default_cache_dir()).read_bytes()), 0
    )
    relu = next(
        c
        for c in flat.operatorCodes
        if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.RELU
    )
    relu.builtinCode = relu.deprecatedBuiltinCode = schema.BuiltinOperator.TANH
    builder = flatbuffers.Builder(0)
    builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "tanh.tflite"
    path.write_bytes(bytes(builder.Output()))
    with pytest.raises(NotImplementedError, match="TANH"):
        load_tflite(path)


@pytest.mark.slow
def test_compiled_matches_eager() -> None:
    """fullgraph=True fails loudly on any graph break (e.g. a numpy value left in forward)."""
    module = _torch_model(MESH_468)
    compiled = torch.compile(module, fullgraph=True)
    batch = torch.from_numpy(_random_inputs(MESH_468, 192, count=2)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        for got, want in zip(compiled(batch), module(batch), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
