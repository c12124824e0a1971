"""An int8 EfficientNet-Lite0 for faster CPU indexing: ``--model lite0-int8``.

The graph is the float model (:mod:`.efficientnet`) put through ONNX Runtime's static
quantisation: int8 weights per output channel, uint8 activations per tensor, ranges measured
(min/max) on the sample photos bundled with the project in ``examples/images`` (60 Caltech-101
photos), so the result is the same on every machine. Two choices matter, both measured on
Caltech-101 (docs/benchmarks.md):

* ``reduce_range`` (7-bit weights): x86 CPUs without VNNI multiply uint8 x int8 with
  VPMADDUBSW, whose 16-bit pair sums saturate with full-range weights; that alone cost the
  descriptor a cosine of 0.91 to the float one. With 7 bits no sum can saturate.
* the stem and the first two blocks stay float: they run at 112x112 on raw pixels and are the
  most sensitive to rounding (cosine 0.976 quantised, 0.991 float), for a small part of the
  time.

The quantised model is a *different* model: its vectors get their own ``model_id``, so an
index built with it is never mixed with float vectors.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .registry import ModelSpec, PreprocessConfig, get_model, register_model

# Nodes whose output name starts with one of these stay float (see the module docstring).
FLOAT_PREFIXES = ("conv_stem", "blocks_0_", "blocks_1_")
CALIBRATION_DIR = Path(__file__).resolve().parents[3] / "examples" / "images"
CALIBRATION_BATCH = 10


def calibration_images(folder: Path = CALIBRATION_DIR) -> list[Path]:
    """The bundled calibration photos, sorted so the ranges never depend on listing order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise ModelError(
            f"the int8 model is calibrated on the project's sample photos, not found in {folder}; "
            "use a source checkout or the float model (--model lite0)"
        )
    return files


def quantize_model(model, preprocess: PreprocessConfig, images: list[Path] | None = None):
    """Statically quantise a float ONNX model (``onnx.ModelProto``); returns a new ModelProto."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from ..images import load_image
    from .preprocess import to_tensor

    tensors = [
        to_tensor(load_image(p, target_size=preprocess.size), preprocess)
        for p in images or calibration_images()
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            batches = range(0, len(tensors), CALIBRATION_BATCH)
            self._feeds = iter(
                [{"image": np.stack(tensors[i : i + CALIBRATION_BATCH])} for i in batches]
            )

        def get_next(self):
            return next(self._feeds, None)

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never edit the caller's
    for node in model.graph.node:
        node.name = node.name or node.output[0]
    keep_float = [n.name for n in model.graph.node if n.output[0].startswith(FLOAT_PREFIXES)]
    with tempfile.TemporaryDirectory(prefix="lookalike-quant-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep_float,
        )
        return onnx.load(dst)


def register_int8(base: str = "lite0") -> ModelSpec:
    """Register ``<base>-int8``: the same weights, quantised when the model is first built."""
    spec = get_model(base)

    def build(state):
        return quantize_model(spec.builder(state), spec.preprocess)

    return register_model(
        ModelSpec(
            name=f"{base}-int8",
            package=spec.package,
            weights_file=spec.weights_file,
            preprocess=spec.preprocess,
            builder=build,
            loader=spec.loader,
            license=spec.license,
        )
    )


register_int8("lite0")
