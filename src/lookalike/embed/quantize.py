"""The int8 EfficientNet-Lite0, the default model: ``lite0-int8``.

The graph is the float model (:mod:`.efficientnet`) put through ONNX Runtime's static
quantisation: int8 weights per output channel, uint8 activations per tensor. Activation
ranges (min/max) were measured once on the 60 sample photos in the project's
``examples/images`` (Caltech-101) and ship with the package as
``int8-ranges-<base>.json``, so an installed package builds the same model, byte for byte,
on every machine without any photos (``python -c "from lookalike.embed.quantize import
main; main()"`` re-measures them; a test checks that the shipped file matches). Two choices matter, both measured on
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

import contextlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .registry import ModelSpec, PreprocessConfig, get_model, register_model

# Nodes whose output name starts with one of these stay float (see the module docstring).
FLOAT_PREFIXES = ("conv_stem", "blocks_0_", "blocks_1_")
CALIBRATION_DIR = Path(__file__).resolve().parents[3] / "examples" / "images"
CALIBRATION_BATCH = 10


def ranges_file(base: str) -> Path:
    """The shipped activation ranges of ``<base>-int8``."""
    return Path(__file__).with_name(f"int8-ranges-{base}.json")


def calibration_images(folder: Path = CALIBRATION_DIR) -> list[Path]:
    """The calibration photos, sorted so the ranges never depend on listing order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise ModelError(f"no calibration photos in {folder}: use a source checkout")
    return files


@contextlib.contextmanager
def _quiet_quantizer():
    """ONNX Runtime's quantiser logs advice on the root logger; keep the user's console clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _named_copy(model):
    """A copy of an ``onnx.ModelProto`` whose nodes all have names (the quantiser needs them)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never edit the caller's
    for node in model.graph.node:
        node.name = node.name or node.output[0]
    return model


def _batches(tensors: list[np.ndarray]):
    """An ONNX Runtime calibration reader over preprocessed images."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            starts = range(0, len(tensors), CALIBRATION_BATCH)
            self._feeds = iter([{"image": np.stack(tensors[i : i + CALIBRATION_BATCH])} for i in starts])

        def get_next(self):
            return next(self._feeds, None)

    return Reader()


def measure_ranges(model, preprocess: PreprocessConfig, images: list[Path]) -> dict:
    """Min/max of every float tensor of ``model`` over ``images``: ``{name: [min, max]}``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    from ..images import load_image
    from .preprocess import to_tensor

    tensors = [to_tensor(load_image(p, target_size=preprocess.size), preprocess) for p in images]
    with tempfile.TemporaryDirectory(prefix="lookalike-calib-") as tmp, _quiet_quantizer():
        src = Path(tmp) / "float.onnx"
        onnx.save(_named_copy(model), src)
        calibrator = create_calibrator(
            src,
            None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(_batches(tensors))
        data = calibrator.compute_data().data
    return {
        name: [float(np.asarray(d.range_value[0]).item()), float(np.asarray(d.range_value[1]).item())]
        for name, d in sorted(data.items())
    }


def quantize_model(model, ranges: dict, size: int):
    """Statically quantise a float ONNX model with known activation ``ranges``; a new ModelProto.

    The ranges are handed to the quantiser as per-tensor overrides; its own calibration pass
    then only sees one blank ``size`` x ``size`` image and decides nothing.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = _named_copy(model)
    keep_float = [n.name for n in model.graph.node if n.output[0].startswith(FLOAT_PREFIXES)]
    overrides = {
        name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for name, (lo, hi) in ranges.items()
    }
    blank = np.zeros((3, size, size), np.float32)
    with tempfile.TemporaryDirectory(prefix="lookalike-quant-") as tmp, _quiet_quantizer():
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(
            str(src),
            str(dst),
            _batches([blank]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep_float,
            extra_options={"TensorQuantOverrides": overrides},
        )
        return onnx.load(dst)


def format_ranges(ranges: dict) -> str:
    """The ranges as JSON, one tensor a line (reviewable diffs when they are re-measured)."""
    lines = [f"  {json.dumps(name)}: [{lo!r}, {hi!r}]" for name, (lo, hi) in ranges.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def load_ranges(base: str) -> dict:
    path = ranges_file(base)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"the int8 model's ranges are missing or damaged ({path}): reinstall") from e


def register_int8(base: str = "lite0") -> ModelSpec:
    """Register ``<base>-int8``: the same weights, quantised when the model is first built."""
    spec = get_model(base)

    def build(state):
        return quantize_model(spec.builder(state), load_ranges(base), spec.preprocess.size)

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


def main(base: str = "lite0") -> None:
    """Re-measure the shipped ranges from ``examples/images`` (run from a source checkout)."""
    spec = get_model(base)
    model = spec.builder(spec.loader(spec.weights_path()))
    ranges = measure_ranges(model, spec.preprocess, calibration_images())
    ranges_file(base).write_text(format_ranges(ranges))
    print(f"wrote {len(ranges)} tensor ranges to {ranges_file(base)}")
