"""ONNX top-down models through onnxruntime (optional extra), decoded with posecap's codecs.

The contract is RTMPose's (mmdeploy / rtmlib exports): one image input (N, 3, h, w), RGB,
ImageNet mean / std normalized (mmpose's mean [123.675, 116.28, 103.53] and std [58.395, 57.12,
57.375] on 0-255 are the same numbers), and either

- two outputs named ``simcc_x`` (N, K, Wx) and ``simcc_y`` (N, K, Wy), decoded by
  :class:`~pipeline.codecs.SimCCCodec` with split ratio Wx / w; or
- one heatmap output (N, K, H, W), decoded by :class:`~pipeline.codecs.HeatmapCodec`.

A fixed batch dimension (RTMPose exports often have N = 1) is honoured by feeding crops in
groups of that size, padding the last group. :func:`export_onnx` writes our own models in this
contract (used by the tests: onnxruntime's output equals the torch model's to 1e-3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.codecs import HeatmapCodec, SimCCCodec
from pipeline.errors import ConfigError
from pipeline.pose2d.estimators import _map_back, to_rgb
from pipeline.training.augment import crop_affine, warp_image
from pipeline.training.data import normalize_images

__all__ = ["OnnxTopDown", "export_onnx", "import_onnxruntime"]


def import_onnxruntime() -> Any:
    """``onnxruntime``, or a ConfigError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("pose2d.backend 'onnx' needs onnxruntime; install it with "
                          "pip install 'posecap[onnx]' (or pip install onnxruntime)") from None
    return onnxruntime


class OnnxTopDown:
    """A top-down ONNX model on person crops (see the module docstring).

    Args:
        path: the .onnx file.
        device: "cpu" or "cuda" (CUDAExecutionProvider when onnxruntime-gpu has it).
        heatmap_unbiased: decode heatmaps with UDP's (size - 1) scaling (posecap, UDP models); False
            for models trained with mmpose's plain MSRA heatmaps.
        simcc_use_dark: refine SimCC argmaxes with 1-D DARK.
    """

    def __init__(self, path: str | Path, device: str = "cpu", heatmap_unbiased: bool = True,
                 simcc_use_dark: bool = False) -> None:
        ort = import_onnxruntime()
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 0
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            raise ConfigError(f"{path}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ConfigError(f"{path}: expected one image input (N, 3, h, w); got "
                              f"{[(i.name, i.shape) for i in inputs]}")
        n, c, h, w = inputs[0].shape
        if not (isinstance(h, int) and isinstance(w, int)) or c != 3:
            raise ConfigError(f"{path}: the input must have a fixed (3, h, w); got {inputs[0].shape}")
        self.input_name = inputs[0].name
        self.fixed_batch = n if isinstance(n, int) and n > 0 else None
        self.input_size = (w, h)
        self.aspect = w / h
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "simcc_x" in outputs and "simcc_y" in outputs:
            self.kind = "simcc"
            self.output_names = ["simcc_x", "simcc_y"]
            wx = outputs["simcc_x"].shape[-1]
            if not isinstance(wx, int):
                raise ConfigError(f"{path}: simcc_x must have a fixed bin count; got {outputs['simcc_x'].shape}")
            self.codec: Any = SimCCCodec(input_size=self.input_size, split_ratio=wx / w, use_dark=simcc_use_dark)
            self.joints = outputs["simcc_x"].shape[1]
        else:
            heat = [o for o in outputs.values() if len(o.shape) == 4]
            if len(heat) != 1:
                raise ConfigError(f"{path}: expected outputs simcc_x and simcc_y, or one heatmap output "
                                  f"(N, K, H, W); got {[(o.name, o.shape) for o in outputs.values()]}")
            k, hh, hw = heat[0].shape[1:]
            if not all(isinstance(v, int) for v in (k, hh, hw)):
                raise ConfigError(f"{path}: the heatmap output needs fixed (K, H, W); got {heat[0].shape}")
            self.kind = "heatmap"
            self.output_names = [heat[0].name]
            self.codec = HeatmapCodec(input_size=self.input_size, heatmap_size=(hw, hh), unbiased=heatmap_unbiased)
            self.joints = k
        if not isinstance(self.joints, int):
            raise ConfigError(f"{path}: the keypoint count K must be fixed in the outputs")

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for (N, 3, h, w) float32 network inputs, honouring a fixed batch size."""
        step = self.fixed_batch or max(len(images), 1)
        outs: list[list[np.ndarray]] = [[] for _ in self.output_names]
        for s in range(0, len(images), step):
            x = images[s:s + step]
            n = len(x)
            if self.fixed_batch and n < step:
                x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), x.dtype)])
            for i, o in enumerate(self.session.run(self.output_names, {self.input_name: x})):
                outs[i].append(np.asarray(o)[:n])
        return [np.concatenate(o) for o in outs]

    def decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (N, K, 2) input pixels, scores (N, K)) from raw outputs."""
        return self.codec.decode(*outputs)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """image (h, w, 3) BGR, boxes (N, 4) cx, cy, w, h -> (N, K, 3) image pixels + score."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, self.joints, 3), np.float32)
        rgb = to_rgb(image)
        affines = [crop_affine(b, self.input_size) for b in boxes]
        crops = np.stack([warp_image(rgb, a, self.input_size) for a in affines])
        kp, score = self.decode(self.run(normalize_images(crops).numpy()))
        out = np.concatenate([kp, score[..., None]], axis=-1).astype(np.float32)
        return np.stack([_map_back(o, a) for o, a in zip(out, affines)])


def export_onnx(model: Any, path: str | Path, batch_size: int | None = 1, opset: int = 17) -> Path:
    """Export a top-down :class:`~pipeline.model.PoseModel` in the RTMPose contract.

    Outputs are named ``simcc_x`` / ``simcc_y`` (SimCC head) or ``heatmaps``. ``batch_size`` fixes
    the batch dimension (the TorchScript exporter; needs the ``onnx`` package); ``None`` exports a
    dynamic batch with the torch.export-based exporter (needs ``onnxscript`` too).
    """
    import torch

    kind = model.config.head.kind
    if kind not in ("heatmap", "simcc"):
        raise ValueError(f"export_onnx: only top-down heads export; got {kind!r}")
    names = ["simcc_x", "simcc_y"] if kind == "simcc" else ["heatmaps"]
    w, h = model.config.input_size
    model = model.eval()
    path = Path(path)
    example = torch.zeros(batch_size or 2, 3, h, w, device=next(model.parameters()).device)
    with torch.no_grad():
        if batch_size is None:
            dim = torch.export.Dim("batch")
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["input"], output_names=names,
                              dynamic_shapes=({0: dim},), opset_version=max(opset, 18))
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"], output_names=names,
                              opset_version=opset)
    return path
