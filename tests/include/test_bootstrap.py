"""``fraudops up``'s bootstrap: an empty registry gets a trained, audited first champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_empty_registry_gets_a_bootstrap_champion(
    fraudops_env: Path, warehouse: Any, monkeypatch: pytest.MonkeyPatch, small_bootstrap_plan: Any
) -> None:
    from fraudops.config import load_settings
    from fraudops.registry import get_alias_version
    from fraudops.stack.bootstrap import ensure_champion

    monkeypatch.setenv("FRAUDOPS_BQ_DATASET", warehouse.cfg.dataset)
    monkeypatch.setenv("FRAUDOPS_MODEL_NAME", "serve-bootstrap")
    settings = load_settings()
    done = ensure_champion(settings, small_bootstrap_plan)
    assert done["action"] == "bootstrap"
    uri = settings.mlflow.tracking_uri
    assert get_alias_version("serve-bootstrap", "champion", tracking_uri=uri) == done["version"]
    rows = warehouse.query("SELECT alias, action, actor, previous_version FROM deployments")
    assert rows == [
        {"alias": "champion", "action": "bootstrap", "actor": "fraudops up", "previous_version": None}
    ]
    again = ensure_champion(settings, small_bootstrap_plan)
    assert again == {"action": "present", "version": done["version"]}
