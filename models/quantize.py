#!/usr/bin/env python3
"""int8 QDQ variant of the 512-d embedder (`make models-int8`).

ONNX Runtime static quantisation: per-channel int8 weights, uint8 activations, MinMax
calibration on the embedder's own inputs for the fixture faces (aligned chips written by
`facegate chips`, and their mirror images, which the engine also embeds). Never calibrated on
the evaluation set. The opset is raised to 13 first: per-channel QuantizeLinear needs it.

usage: quantize.py MODEL_DIR CHIP_DIR
Writes MODEL_DIR/arcface512_int8.onnx and records it in MODEL_DIR/models.lock.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)

SIDE = 112


class Chips(CalibrationDataReader):
    def __init__(self, chip_dir: Path, input_name: str):
        chips = []
        for f in sorted(chip_dir.glob("*.f32")):
            chip = np.fromfile(f, dtype="<f4").reshape(1, 3, SIDE, SIDE)
            chips.append(chip)
            chips.append(chip[:, :, :, ::-1].copy())
        if not chips:
            sys.exit(f"no .f32 chips in {chip_dir} (run facegate chips)")
        self.count = len(chips)
        self.items = iter([{input_name: c} for c in chips])

    def get_next(self):
        return next(self.items, None)


def main() -> int:
    model_dir, chip_dir = Path(sys.argv[1]), Path(sys.argv[2])
    src = model_dir / "arcface512.onnx"
    out = model_dir / "arcface512_int8.onnx"
    lock_path = model_dir / "models.lock"
    lock = json.loads(lock_path.read_text())
    src_sha = hashlib.sha256(src.read_bytes()).hexdigest()
    chips_sha = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(chip_dir.glob("*.f32")))).hexdigest()
    key = hashlib.sha256(f"{src_sha}:{chips_sha}:per-channel-minmax-qdq".encode()).hexdigest()
    entry = lock.get(out.name, {})
    if out.exists() and entry.get("key") == key and entry.get("sha256") == hashlib.sha256(out.read_bytes()).hexdigest():
        print(f"[int8] {out.name} is up to date")
        return 0
    model = onnx.load(str(src))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        model = version_converter.convert_version(model, 13)
    staged = model_dir / "arcface512_op13.tmp.onnx"
    onnx.save(model, str(staged))
    reader = Chips(chip_dir, model.graph.input[0].name)
    tmp = model_dir / "arcface512_int8.tmp.onnx"
    quantize_static(str(staged), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    staged.unlink()
    tmp.replace(out)
    lock[out.name] = {
        "key": key,
        "model": "arcface512_int8",
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "source": f"arcface512.onnx quantised (QDQ, per-channel int8, MinMax on {reader.count} fixture chips)",
    }
    lock_path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    print(f"[int8] {out.name} written ({reader.count} calibration chips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
