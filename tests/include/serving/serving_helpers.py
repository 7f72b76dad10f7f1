"""Helpers shared by the scoring-service tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Amount above which the "fragile" model returns NaN (the reference rows stay below it).
NAN_ABOVE = 50_000.0


def register(bundle: Path, tracking_uri: str, model_name: str) -> str:
    from fraudops.registry import register_artifact

    return register_artifact(
        bundle, tracking_uri=tracking_uri, model_name=model_name, experiment="serving-tests"
    ).version


def point(warehouse: Any, name: str, alias: str, version: str, uri: str) -> None:
    """Move ``alias`` the way the platform does (an audit row first): a service with a warehouse
    serves only a version the newest audit row of its alias names."""
    from fraudops.registry import move_alias

    move_alias(
        warehouse,
        model_name=name,
        alias=alias,
        version=version,
        action="shadow" if alias.startswith("challenger") else "promote",
        actor="test",
        tracking_uri=uri,
    )


def sigmoid_model(
    n: int,
    extra: list[Any] | None = None,
    noise: str | None = None,
    *,
    reduce_noise: bool = False,
    inits: list[Any] | None = None,
    check: bool = True,
) -> bytes:
    """A hand-made ONNX model over ``n`` features: p = sigmoid(amount/1000 - 2) + 0 * ``noise``,
    probabilities = [1-p, p]. ``extra`` nodes compute the float tensor ``noise`` from the constants
    ``x0`` (amount), ``zero``, ``one``, ``scale``, ``two``; ``reduce_noise`` sums it to a scalar
    first. A NaN or a hang in ``noise`` becomes the model's."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: Any, dtype: Any = np.float32) -> Any:
        return helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype), name)
        )

    tail: list[Any] = []
    if noise is not None:
        if reduce_noise:
            tail.append(helper.make_node("ReduceSum", [noise], ["noise_sum"], keepdims=0))
            noise = "noise_sum"
        tail.append(helper.make_node("Mul", [noise, "zero"], ["z"]))
    else:
        tail.append(helper.make_node("Identity", ["zero"], ["z"]))
    nodes = [
        const("starts", [0], np.int64),
        const("ends", [1], np.int64),
        const("axes", [1], np.int64),
        helper.make_node("Slice", ["features", "starts", "ends", "axes"], ["x0"]),
        const("zero", 0.0),
        const("one", 1.0),
        const("scale", 0.001),
        const("two", 2.0),
        *(extra or []),
        *tail,
        helper.make_node("Mul", ["x0", "scale"], ["s"]),
        helper.make_node("Sub", ["s", "two"], ["s2"]),
        helper.make_node("Sigmoid", ["s2"], ["p0"]),
        helper.make_node("Add", ["p0", "z"], ["p"]),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "handmade",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=inits or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def swap_model(src: Path, dest: Path, onnx_bytes: bytes) -> Path:
    """A copy of bundle ``src`` at ``dest`` with ``onnx_bytes`` as its model (manifest hash updated)."""
    import json
    import shutil

    from fraudops.training.package import sha256_file

    shutil.copytree(src, dest)
    (dest / "model.onnx").write_bytes(onnx_bytes)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = sha256_file(dest / "model.onnx")
    manifest["model_family"] = "handmade"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def make_service(tmp: Path, name: str, warehouse: Any = None, *, shadow: bool = False, **opts: Any) -> Any:
    """A ScoringService for ``name`` as the tests run it: fast alias polls, no warm-up, simulated
    event clock (the tests stream 2026-06-01 event times), predictions logged when there is a
    warehouse, no mirroring unless ``shadow_sample_rate`` says so; ``opts`` override options."""
    from fraudops.config import load_settings
    from fraudops.serving.options import ServingOptions
    from fraudops.serving.service import ScoringService

    defaults: dict[str, Any] = {
        "alias_poll_s": 0.3,
        "warm_days": 0,
        "work_dir": tmp / "serving",
        "shadow_sample_rate": 0.0,
        "log_flush_interval_s": 0.2,
        "log_predictions": warehouse is not None,
        "event_clock": "simulated",
    }
    options = ServingOptions(settings=load_settings(), **{**defaults, **opts})
    return ScoringService(options, warehouse=warehouse, model_name=name, shadow=shadow)


def service_process(tmp: Path, warehouse: Any, name: str, **env: str) -> Any:
    """The scoring service as ``fraudops up`` runs it (``python -m fraudops.serving``, its own
    process group with its shipper and shadow workers) on a free port, for ``name`` in
    ``warehouse``'s dataset, a fresh state folder, no warm-up, simulated clock; ``env`` adds to
    or overrides its environment. Returns the ``ServiceSpec`` (``process.start``/``stop`` it)."""
    import sys

    from fraudops.stack import process
    from fraudops.stack.process import ServiceSpec, http_ok

    port = process.free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp / f"state-{name}"
    state.mkdir(parents=True, exist_ok=True)
    return ServiceSpec(
        name=f"scoring-{name}",
        command=[sys.executable, "-m", "fraudops.serving", "--log-level", "warning"],
        url=url,
        health=lambda: http_ok(f"{url}/health"),
        log_file=tmp / f"scoring-{name}.log",
        pid_file=tmp / f"scoring-{name}.pid",
        env={
            "FRAUDOPS_STATE_DIR": str(state),
            "FRAUDOPS_BQ_DATASET": warehouse.cfg.dataset,
            "FRAUDOPS_MODEL_NAME": name,
            "FRAUDOPS_SCORING_PORT": str(port),
            "FRAUDOPS_WARM_DAYS": "0",
            "FRAUDOPS_EVENT_CLOCK": "simulated",
            "FRAUDOPS_LOG_FLUSH_S": "1.0",
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        cwd=state,
        ready_timeout_s=180.0,
        port=port,
    )


def metric(client: Any, line_start: str) -> float:
    """The value of the first ``/metrics`` line starting with ``line_start`` (0 when absent)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def tx(i: int, amount: float = 42.0, card: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid /score body."""
    return {
        "transaction_id": f"tx-{i}",
        "card_id": card or f"c-{i % 50}",
        "terminal_id": f"t-{i % 20}",
        "merchant_id": f"m-{i % 10}",
        "amount": amount,
        "timestamp": f"2026-06-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "region": "eu-west",
        "device_id": f"d-{i % 30}",
        "channel": "ecom",
        "currency": "EUR",
        **extra,
    }


class LiveServer:
    """A real uvicorn server for ``app`` on a free port, in a thread (stopped by ``close``).

    Configured as ``fraudops serve`` configures it (``fastpath.server_config``: uvloop and the
    ``POST /score`` fast path), so these tests exercise what production runs.
    """

    def __init__(self, app: Any, **config: Any) -> None:
        import threading

        import uvicorn

        from fraudops.serving.fastpath import server_config
        from fraudops.stack.process import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = server_config(app, host="127.0.0.1", port=self.port, log_level="warning")
        for key, value in config.items():  # e.g. timeout_keep_alive
            setattr(cfg, key, value)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def wait_for(predicate: Any, timeout_s: float = 60.0, what: str = "condition") -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
