"""What an uploaded file is, and the native model in it (issue #19, model intake).

Accepted: ONNX files; LightGBM boosters (model text file); XGBoost boosters (JSON or UBJ);
scikit-learn estimators and pipelines saved with skops. Refused, each with how to save the model
safely instead: pickle and joblib files (a pickle is code: loading one runs it), PyTorch
checkpoints (a zip holding a pickle), Keras/TensorFlow files and SavedModel folders (export them
to ONNX), compressed files. Nothing here imports or unpickles what it has not identified first;
detection reads bytes only.
"""

from __future__ import annotations

import io
import json
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudops.exceptions import IntakeError

ONNX = "onnx"
LIGHTGBM = "lightgbm"
XGBOOST = "xgboost"
SKOPS = "sklearn-skops"
FORMATS = (ONNX, LIGHTGBM, XGBOOST, SKOPS)

HOW_TO_SAVE = (
    "save scikit-learn models with skops (`skops.io.dump(model, 'model.skops')`), LightGBM boosters "
    "as text (`booster.save_model('model.txt')`), XGBoost boosters as JSON or UBJ "
    "(`booster.save_model('model.json')`), and PyTorch or TensorFlow models as ONNX (see the README)"
)

#: Types a skops file may contain (module prefixes); anything else is refused, never loaded.
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "builtins.", "collections.")
#: ``builtins`` types skops files hold for plain values; others (``eval``, ``exec``...) are refused.
SKOPS_TRUSTED_BUILTINS = {
    "builtins.dict",
    "builtins.list",
    "builtins.tuple",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.NoneType",
    "builtins.slice",
    "builtins.type",
    "collections.OrderedDict",
    "collections.defaultdict",
}

_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ": "xz",
    b"\x04\x22\x4d\x18": "lz4",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def refuse(check: str, message: str) -> IntakeError:
    return IntakeError(check, message)


def is_pickle(data: bytes) -> bool:
    """Whether ``data`` is a complete pickle opcode stream (any protocol): it parses up to STOP.
    Random or structured binary data fails to parse within a few bytes."""
    if not data:
        return False
    try:
        last = None
        for opcode, _, _ in pickletools.genops(io.BytesIO(data)):
            last = opcode.name
        return last == "STOP"
    except Exception:
        return False


def _npy_holds_objects(data: bytes) -> bool:
    """A ``.npy`` payload whose dtype is ``object``: NumPy stores those as a pickle."""
    if not data.startswith(b"\x93NUMPY"):
        return False
    header = data[:4096]
    return b"'descr': '|O'" in header or b"'descr': 'O'" in header


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


@dataclass(frozen=True)
class Detected:
    format: str
    detail: str


def detect(path: Path, max_bytes: int) -> Detected:
    """The format of the upload at ``path``, or ``IntakeError`` saying why it is refused."""
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            raise refuse(
                "format",
                "a TensorFlow SavedModel folder is not accepted: export it to ONNX with tf2onnx "
                "(`python -m tf2onnx.convert --saved-model DIR --output model.onnx`)",
            )
        raise refuse("format", f"{path} is a folder: upload one model file")
    if not path.is_file():
        raise refuse("format", f"{path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise refuse("size", "the file is empty")
    if size > max_bytes:
        raise refuse("size", f"the file has {size:,} bytes, more than the limit of {max_bytes:,}")
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle", ".joblib", ".sav", ".dill") or is_pickle(data):
        raise refuse(
            "pickle",
            "pickle and joblib files are refused: loading one runs the code inside it. Instead, "
            + HOW_TO_SAVE,
        )
    for magic, kind in _COMPRESSED.items():
        if data.startswith(magic):
            raise refuse(
                "format",
                f"{kind}-compressed files are refused (joblib saves pickles that way): " + HOW_TO_SAVE,
            )
    if data.startswith(b"\x89HDF"):
        raise refuse("format", "Keras HDF5 files are refused: export the model to ONNX with tf2onnx")
    if zipfile.is_zipfile(path):
        return _detect_zip(path)
    if data.startswith(b"tree\n") or data.startswith(b"tree\r\n"):
        head = data[:4096].decode("utf-8", "replace")
        if "version=" in head and "num_class=" in head:
            return Detected(LIGHTGBM, "LightGBM model text file")
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        if b'"learner"' in data[:4096]:
            try:
                json.loads(data)
            except ValueError as err:
                raise refuse("format", f"the XGBoost JSON model does not parse: {err}") from err
            return Detected(XGBOOST, "XGBoost booster (JSON)")
        if b"learner" in data[:64] and data[1:2] in (b"L", b"i", b"U", b"l", b"$", b"#"):
            return Detected(XGBOOST, "XGBoost booster (UBJ)")
    if _parses_as_onnx(data):
        return Detected(ONNX, "ONNX model")
    raise refuse(
        "format", f"{path.name} is none of the accepted formats ({', '.join(FORMATS)}): " + HOW_TO_SAVE
    )


def _parses_as_onnx(data: bytes) -> bool:
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception:
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def _detect_zip(path: Path) -> Detected:
    try:
        members = _zip_members(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise refuse("format", f"the zip archive is unreadable: {err}") from err
    names = set(members)
    if any(n.endswith(".pkl") or n.endswith("data.pkl") for n in names):
        raise refuse(
            "pickle",
            "the archive holds a pickle (a PyTorch checkpoint?): export the model to ONNX with "
            "`torch.onnx.export` instead (see the README)",
        )
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        raise refuse("format", "Keras .keras files are refused: export the model to ONNX with tf2onnx")
    if "schema.json" in names:
        for name, payload in members.items():
            if _npy_holds_objects(payload) or (name != "schema.json" and is_pickle(payload)):
                raise refuse("pickle", f"the skops archive member {name} holds pickled objects")
        return Detected(SKOPS, "scikit-learn model saved with skops")
    raise refuse("format", "a zip archive that is not a skops file: " + HOW_TO_SAVE)


def load_skops(path: Path) -> Any:
    """The estimator in a skops file, after checking every type it would create."""
    from skops.io import get_untrusted_types, load

    try:
        untrusted = get_untrusted_types(file=path)
    except Exception as err:
        raise refuse("format", f"the skops file does not parse: {err}") from err
    refused = sorted(
        t
        for t in untrusted
        if not t.startswith(SKOPS_TRUSTED_PREFIXES)
        or (t.startswith(("builtins.", "collections.")) and t not in SKOPS_TRUSTED_BUILTINS)
    )
    if refused:
        raise refuse(
            "types",
            "the skops file would create types outside scikit-learn, NumPy and SciPy: " + ", ".join(refused),
        )
    try:
        return load(path, trusted=list(untrusted))
    except Exception as err:
        raise refuse("format", f"the skops file does not load: {err}") from err
