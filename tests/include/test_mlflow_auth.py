"""Issue #18, finding 10: the local MLflow runs MLflow's basic-auth app, so whoever reaches it
cannot move the champion (or read models) without the platform's account; credentials live in a
0600 file in the state folder and reach the platform's clients through the environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.reliability


def test_anonymous_or_wrong_credentials_cannot_move_an_alias(mlflow_server: str) -> None:
    from mlflow import MlflowClient

    from fraudops.registry import get_alias_version, set_alias

    name = "auth-probe"
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    client.create_registered_model(name)
    experiment = client.get_experiment_by_name("auth-probe") or client.get_experiment(
        client.create_experiment("auth-probe")
    )
    run = client.create_run(experiment.experiment_id)
    source = f"{run.info.artifact_uri}/model"
    version = client.create_model_version(name, source=source, run_id=run.info.run_id).version
    body = {"name": name, "alias": "champion", "version": str(version)}
    alias_url = f"{mlflow_server}/api/2.0/mlflow/registered-models/alias"
    assert httpx.get(f"{mlflow_server}/health").status_code == 200  # only health is open
    anonymous = httpx.post(alias_url, json=body)
    assert anonymous.status_code == 401, anonymous.text
    wrong = httpx.post(alias_url, json=body, auth=(os.environ["MLFLOW_TRACKING_USERNAME"], "guess"))
    assert wrong.status_code == 401, wrong.text
    read = httpx.get(f"{mlflow_server}/api/2.0/mlflow/registered-models/get", params={"name": name})
    assert read.status_code == 401, read.text
    assert get_alias_version(name, "champion", tracking_uri=mlflow_server) is None
    # The platform's account (from the environment, as every fraudops process gets it) may.
    assert set_alias(name, "champion", version, tracking_uri=mlflow_server) is True
    assert get_alias_version(name, "champion", tracking_uri=mlflow_server) == str(version)


def test_credentials_file_is_private_stable_and_seeds_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudops.stack.services import mlflow_auth

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    path = tmp_path / "auth" / "credentials.json"
    first = mlflow_auth(path)
    assert first.username == "fraudops" and len(first.password) >= 20 and len(first.secret_key) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert mlflow_auth(path) == first  # read back, not regenerated
    assert mlflow_auth(tmp_path / "other.json") != first  # random per stack

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "her-own-password")
    chosen = mlflow_auth(tmp_path / "chosen.json")
    assert (chosen.username, chosen.password) == ("alice", "her-own-password")

    (tmp_path / "torn.json").write_text('{"username": "x"')
    with pytest.raises(Exception, match="unreadable credentials file"):
        mlflow_auth(tmp_path / "torn.json")


def test_settings_hand_local_credentials_to_mlflows_client_only_for_a_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudops.config import load_settings, local_mlflow_credentials_file
    from fraudops.stack.services import mlflow_auth

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path))
    auth = mlflow_auth(local_mlflow_credentials_file(tmp_path))

    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    load_settings()
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ  # never sent to a remote server

    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    load_settings()
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == auth.username
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == auth.password

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "set-by-the-user")  # the environment wins
    load_settings()
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "set-by-the-user"
