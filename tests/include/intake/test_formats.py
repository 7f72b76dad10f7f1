"""Model intake without services: what an upload is, what is refused before anything loads it,
the ONNX screen (external data, operators, subgraphs) and the interface intake gives a graph."""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fraudops.exceptions import IntakeError
from fraudops.intake import formats, parse_features
from fraudops.intake.onnx_graph import conform, screen

pytestmark = pytest.mark.byom

MB = 2**20


def _refused(path: Path, check: str, words: str, max_bytes: int = 64 * MB) -> str:
    with pytest.raises(IntakeError) as err:
        formats.detect(path, max_bytes)
    assert err.value.check == check, err.value
    assert words in err.value.reason, err.value.reason
    return err.value.reason


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_pickles_are_refused_whatever_their_name(tmp_path: Path, protocol: int) -> None:
    f = tmp_path / "model.onnx"  # a pickle in disguise
    f.write_bytes(pickle.dumps(_Evil(), protocol=protocol))
    reason = _refused(f, "pickle", "pickle and joblib files are refused")
    assert "skops.io.dump" in reason  # and it says how to save the model safely


def test_joblib_files_are_refused_by_name_and_compressed(tmp_path: Path) -> None:
    joblib = tmp_path / "model.joblib"
    joblib.write_bytes(b"anything")
    _refused(joblib, "pickle", "pickle and joblib")
    packed = tmp_path / "model.bin"
    packed.write_bytes(gzip.compress(pickle.dumps({"w": [1, 2]})))
    _refused(packed, "format", "gzip-compressed files are refused")


def test_a_pytorch_checkpoint_keras_files_and_savedmodels_are_sent_to_onnx(tmp_path: Path) -> None:
    pt = tmp_path / "model.pt"
    with zipfile.ZipFile(pt, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    _refused(pt, "pickle", "torch.onnx.export")
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    _refused(h5, "format", "tf2onnx")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\0")
    _refused(saved, "format", "tf2onnx")


def test_size_empty_and_unknown_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _refused(empty, "size", "empty")
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\0" * (2 * MB))
    _refused(big, "size", "more than the limit", max_bytes=MB)
    junk = tmp_path / "notes.txt"
    junk.write_text("a fraud model, trust me")
    _refused(junk, "format", "none of the accepted formats")


def test_a_skops_archive_with_pickled_members_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "model.skops"
    with zipfile.ZipFile(f, "w") as zf:
        zf.writestr("schema.json", "{}")
        zf.writestr(
            "weights.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
        )
    _refused(f, "pickle", "holds pickled objects")


def test_a_skops_file_with_types_outside_sklearn_is_never_loaded(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.random.default_rng(0).normal(size=(50, 3)), [0, 1] * 25)
    model.evil = _Evil()
    f = tmp_path / "model.skops"
    sio.dump(model, f)
    assert formats.detect(f, 64 * MB).format == formats.SKOPS
    with pytest.raises(IntakeError) as err:
        formats.load_skops(f)
    assert err.value.check == "types" and "_Evil" in err.value.reason


def _graph(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], out_shape: list[int | None]
) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _logistic(out_width: int = 1) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.full((3, out_width), 0.5, np.float32), "w")
    return _graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["y"])],
        [w],
        [None, out_width],
    )


def test_one_probability_column_becomes_the_two_column_interface() -> None:
    model = conform(_logistic(1), 3)
    assert [i.name for i in model.graph.input] == ["features"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    x = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 1.0]], np.float32)
    out = ort.InferenceSession(model.SerializeToString()).run(["probabilities"], {"features": x})[0]
    p = 1 / (1 + np.exp(-x.sum(axis=1) * 0.5))
    np.testing.assert_allclose(out[:, 1], p, rtol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


def test_one_column_already_named_probabilities_is_read_the_same_way() -> None:
    """PyTorch's export with the README's names: a [N, 1] sigmoid output called ``probabilities``
    (the conformed graph once named two tensors so and failed the ONNX checker)."""
    model = _logistic(1)
    model.graph.node[1].output[0] = "probabilities"
    model.graph.output[0].name = "probabilities"
    conformed = conform(model, 3)
    x = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 1.0]], np.float32)
    out = ort.InferenceSession(conformed.SerializeToString()).run(["probabilities"], {"features": x})[0]
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out[:, 1], 1 / (1 + np.exp(-x.sum(axis=1) * 0.5)), rtol=1e-6)


def test_interfaces_intake_cannot_read_are_refused() -> None:
    with pytest.raises(IntakeError, match="must be \\[N, 5\\]"):
        conform(_logistic(1), 5)  # the model reads 3 features, the upload names 5
    with pytest.raises(IntakeError, match="expected \\[N, 2\\] or \\[N, 1\\]"):
        conform(_logistic(3), 3)


def test_external_data_is_refused(tmp_path: Path) -> None:
    model = _logistic(1)
    from onnx.external_data_helper import set_external_data

    set_external_data(model.graph.initializer[0], location="../../etc/weights.bin")
    model.graph.initializer[0].ClearField("raw_data")
    with pytest.raises(IntakeError) as err:
        screen(model)
    assert err.value.check == "external_data" and "w" in err.value.reason


def test_operators_outside_the_allow_list_are_refused() -> None:
    rnd = _graph(
        [helper.make_node("RandomUniformLike", ["x"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])],
        [],
        [None, 3],
    )
    with pytest.raises(IntakeError, match="RandomUniformLike"):
        screen(rnd)
    custom = _graph([helper.make_node("Steal", ["x"], ["y"], domain="com.evil")], [], [None, 3])
    with pytest.raises(IntakeError, match=r"com\.evil:Steal"):
        screen(custom)
    body = helper.make_graph([], "body", [], [])
    loop = _graph(
        [helper.make_node("If", ["x"], ["y"], then_branch=body, else_branch=body)],
        [],
        [None, 3],
    )
    with pytest.raises(IntakeError, match="If"):
        screen(loop)
    assert screen(_logistic(1)) == {"MatMul": 1, "Sigmoid": 1}


def test_features_are_resolved_against_the_registry() -> None:
    spec = parse_features(["tx_amount", "card_tx_count_1d@v1"])
    assert spec.names == ["tx_amount", "card_tx_count_1d"]
    with pytest.raises(IntakeError) as err:
        parse_features(["tx_amount", "card_shoe_size", "x;DROP TABLE"])
    assert "card_shoe_size: unknown" in err.value.reason and "is not a feature name" in err.value.reason
    with pytest.raises(IntakeError, match="version mismatch"):
        parse_features(["tx_amount@v9"])
    with pytest.raises(IntakeError, match="more than once"):
        parse_features(["tx_amount", "tx_amount"])
    with pytest.raises(IntakeError, match="name the registered features"):
        parse_features([])


def test_a_warehouse_outage_is_a_retryable_failure_not_a_refusal(tmp_path: Path) -> None:
    """The upload is fine, the warehouse is not there: the report says which step failed and that
    it is worth trying again (the console answers 503), and nothing was registered."""
    import lightgbm as lgb

    from fraudops.config import WarehouseConfig
    from fraudops.intake import IntakeRequest, run_intake
    from fraudops.stack.process import free_port
    from fraudops.warehouse import Warehouse

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, (X[:, 0] > 1).astype(int)), 5)
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    down = Warehouse(
        WarehouseConfig(project="p", dataset="d", endpoint=f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    )
    req = IntakeRequest(path, ("tx_amount", "tx_hour_utc"), "dana", "intake-outage", emit=False)
    report = run_intake(req, warehouse=down)
    assert not report.ok and report.retryable and report.version is None
    assert [c.name for c in report.checks if c.passed] == ["format", "features", "conversion", "screen"]
    assert report.checks[-1].name == "parity" and "unreachable" in report.checks[-1].detail


def test_model_names_are_checked_before_they_reach_a_registry_filter(tmp_path: Path) -> None:
    from fraudops.intake import IntakeRequest, run_intake

    f = tmp_path / "m.onnx"
    f.write_bytes(b"x")
    report = run_intake(IntakeRequest(f, ("tx_amount",), "dana", "x' or name != '", emit=False))
    assert report.checks[-1].name == "model_name" and not report.ok
