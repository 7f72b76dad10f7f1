"""Untrusted artifacts are verified outside the production process (issue #18, finding 4).

Hostile bundles built here: real ONNX graphs that allocate gigabytes, loop for ever, or keep a
tensor in "external data" pointing outside the bundle, plus a manifest that names a file outside
it and a bundle changed after it passed. Each is refused with its reason by
``verify_isolated``, and the process that asked survives. The last test runs a real scoring
service: while a hanging champion is being verified, production keeps answering with the old one,
then refuses it and loads the next version.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import LiveServer, register, sigmoid_model, swap_model, tx, wait_for

from fraudops.exceptions import ArtifactError
from fraudops.training.verifier import VerifyLimits, verify_isolated

pytestmark = [pytest.mark.reliability]


def _hostile(
    src: Path, dest: Path, extra: list[Any], tail: str, n: int, inits: list[Any] | None = None
) -> Path:
    """A copy of bundle ``src`` whose model is p = sigmoid(amount/1000 - 2) + 0 * sum(``tail``) (a
    float tensor computed by ``extra`` nodes)."""
    model = sigmoid_model(n, extra, tail, reduce_noise=True, inits=inits, check=False)
    path: Path = swap_model(src, dest, model)
    return path


def _n(bundle: Path) -> int:
    return int(json.loads((bundle / "manifest.json").read_text())["n_features"])


def _memory_hog(src: Path, dest: Path) -> Path:
    """Allocates 4 GB (a billion floats) on every call."""
    import numpy as np
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1_000_000_000], np.int64), "big_shape")
    value = numpy_helper.from_array(np.array([1.0], np.float32), "v")
    extra = [
        helper.make_node("Constant", [], ["big_shape"], value=shape),
        helper.make_node("ConstantOfShape", ["big_shape"], ["big"], value=value),
        helper.make_node("Mul", ["big", "x0s"], ["bigx"]),
        helper.make_node("ReduceSum", ["x0"], ["x0s"], keepdims=0),
    ]
    # ReduceSum before use (node order does not matter to ONNX Runtime, but keep it topological)
    extra = [extra[0], extra[1], extra[3], extra[2]]
    return _hostile(src, dest, extra, "bigx", _n(src))


def _endless_loop(src: Path, dest: Path) -> Path:
    """A Loop of 10^15 iterations (each adds 1 to a counter): never finishes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node(
                "Constant", [], ["inc"], value=numpy_helper.from_array(np.array([1.0], np.float32), "inc")
            ),
            helper.make_node("Add", ["acc_in", "inc"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1]),
        ],
    )
    extra = [
        helper.make_node(
            "Constant", [], ["trips"], value=numpy_helper.from_array(np.array(10**15, np.int64), "trips")
        ),
        helper.make_node("Constant", [], ["go"], value=numpy_helper.from_array(np.array(True), "go")),
        helper.make_node(
            "Constant", [], ["acc0"], value=numpy_helper.from_array(np.array([0.0], np.float32), "acc0")
        ),
        helper.make_node("Loop", ["trips", "go", "acc0"], ["acc"], body=body),
    ]
    assert isinstance(body, onnx.GraphProto)
    return _hostile(src, dest, extra, "acc", _n(src))


def _external_data(src: Path, dest: Path, location: str) -> Path:
    """An initializer whose bytes ONNX Runtime would read from ``location`` (outside the bundle)."""
    from onnx import TensorProto, helper
    from onnx.external_data_helper import set_external_data

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], raw_data=b"\0" * 16)
    set_external_data(tensor, location=location, offset=0, length=16)
    tensor.data_location = TensorProto.EXTERNAL
    extra = [helper.make_node("Mul", ["w", "zero"], ["wz"])]
    return _hostile(src, dest, extra, "wz", _n(src), inits=[tensor])


FAST = VerifyLimits(memory_mb=1536, cpu_s=30, wall_s=60)


def test_a_model_that_allocates_gigabytes_is_refused_and_the_caller_survives(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    hog = _memory_hog(bundles["a"], tmp_path / "hog")
    t0 = time.monotonic()
    with pytest.raises(ArtifactError) as err:
        verify_isolated(hog, n_latency_calls=200, limits=FAST)
    print(f"\nmemory hog refused in {time.monotonic() - t0:.1f} s: {err.value}")
    assert "needs more than 1536 MiB" in str(err.value) or "died with" in str(err.value), err.value


def test_a_model_that_never_finishes_is_stopped_by_the_wall_clock(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    loop = _endless_loop(bundles["a"], tmp_path / "loop")
    t0 = time.monotonic()
    with pytest.raises(ArtifactError, match=r"did not finish within 8 s"):
        verify_isolated(loop, n_latency_calls=200, limits=VerifyLimits(memory_mb=1536, cpu_s=60, wall_s=8))
    took = time.monotonic() - t0
    assert took < 20, took
    print(f"\nendless loop stopped after {took:.1f} s")


def test_a_model_that_burns_cpu_is_stopped_by_its_cpu_limit(bundles: dict[str, Path], tmp_path: Path) -> None:
    loop = _endless_loop(bundles["a"], tmp_path / "loop")
    with pytest.raises(ArtifactError, match=r"died with SIGXCPU: it used more than 4 s of CPU time"):
        verify_isolated(loop, n_latency_calls=200, limits=VerifyLimits(memory_mb=1536, cpu_s=4, wall_s=120))


@pytest.mark.parametrize("location", ["/etc/hostname", "../../../../etc/hostname", "weights.bin"])
def test_external_data_is_refused_wherever_it_points(
    bundles: dict[str, Path], tmp_path: Path, location: str
) -> None:
    bundle = _external_data(bundles["a"], tmp_path / "ext", location)
    (bundle / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match=r"keeps tensor 'w' in external data"):
        verify_isolated(bundle, n_latency_calls=200, limits=FAST)


def test_a_manifest_naming_a_file_outside_the_bundle_is_refused(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "escape"
    shutil.copytree(bundles["a"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../../../etc/hostname"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"only plain file names inside the artifact"):
        verify_isolated(bundle, n_latency_calls=200, limits=FAST)


def test_a_verifier_killed_mid_check_refuses_the_bundle(
    bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child dies by a signal (SIGKILL here, as the OOM killer or a crash in native code would
    end it): the caller gets an ArtifactError, not a crash."""
    monkeypatch.setenv("FRAUDOPS_CRASH_AT", "verifier:start")
    with pytest.raises(ArtifactError, match=r"verification process died with SIGKILL"):
        verify_isolated(bundles["a"], n_latency_calls=200, limits=FAST)


def test_a_bundle_changed_after_it_passed_is_not_loaded(bundles: dict[str, Path], tmp_path: Path) -> None:
    from fraudops.training.package import load_scorer, sha256_file

    bundle = tmp_path / "swapped"
    shutil.copytree(bundles["a"], bundle)
    passed = verify_isolated(bundle, n_latency_calls=200, limits=FAST)
    assert set(passed.digests) >= {"manifest.json", "model.onnx", "feature_spec.json"}
    assert load_scorer(bundle, expect=passed.digests).n_features == _n(bundle)
    # Another model with a consistent manifest: every hash check of its own passes.
    shutil.copy(bundles["b"] / "model.onnx", bundle / "model.onnx")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = sha256_file(bundle / "model.onnx")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"manifest\.json changed after verification"):
        load_scorer(bundle, expect=passed.digests)


@pytest.mark.integration
def test_production_keeps_serving_while_a_hanging_champion_is_verified_then_refuses_it(
    fraudops_env: Path, mlflow_server: str, bundles: dict[str, Path], tmp_path: Path
) -> None:
    from fraudops.config import load_settings
    from fraudops.registry import set_alias
    from fraudops.serving.app import create_app
    from fraudops.serving.options import ServingOptions
    from fraudops.serving.service import ScoringService

    name = "verifier-hang"
    va = register(bundles["a"], mlflow_server, name)
    vloop = register(_endless_loop(bundles["a"], tmp_path / "loop"), mlflow_server, name)
    vb = register(bundles["b"], mlflow_server, name)
    set_alias(name, "champion", va, tracking_uri=mlflow_server)
    options = ServingOptions(
        settings=load_settings(),
        alias_poll_s=0.3,
        warm_days=0,
        work_dir=tmp_path / "serving",
        shadow_sample_rate=0.0,
        log_predictions=False,
        event_clock="simulated",
    )
    service = ScoringService(options, model_name=name, shadow=False)
    service.cache.limits = VerifyLimits(memory_mb=1536, cpu_s=60, wall_s=10)
    server = LiveServer(create_app(service))
    try:
        client = httpx.Client(base_url=server.url, timeout=30)
        wait_for(lambda: client.get("/health").status_code == 200, 120, "champion loaded")
        set_alias(name, "champion", vloop, tracking_uri=mlflow_server)
        t0 = time.monotonic()
        answered, slowest = 0, 0.0
        key = f"champion@{vloop}"
        while key not in client.get("/version").json()["rejected"]:
            assert time.monotonic() - t0 < 60, "the hanging champion was never refused"
            start = time.perf_counter()
            got = client.post("/score", json=tx(answered))
            slowest = max(slowest, time.perf_counter() - start)
            assert got.status_code == 200 and got.json()["model_version"] == va, got.text
            assert client.get("/health").json()["status"] == "ready"
            answered += 1
        reason = client.get("/version").json()["rejected"][key]
        print(
            f"\n{answered} requests answered by v{va} while v{vloop} hung its verifier "
            f"(slowest {slowest * 1e3:.1f} ms); {reason}"
        )
        assert "did not finish within 10 s" in reason, reason
        assert answered > 20 and slowest < 1.0
        assert not [p for p in _children() if "fraudops.training.verifier" in p], _children()
        set_alias(name, "champion", vb, tracking_uri=mlflow_server)  # the watcher still works
        wait_for(
            lambda: (client.get("/version").json()["champion"] or {}).get("version") == vb,
            60,
            "next champion",
        )
    finally:
        server.close()


def _children() -> list[str]:
    """Command lines of this process's live children."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().split()
            if int(stat[3]) == os.getpid():
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return out
