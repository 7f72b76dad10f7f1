"""The feature store: one registry of versioned definitions, an offline (point-in-time) builder and
an online (incremental) store that give identical vectors for the same events.

Light names (definitions, specs) import eagerly; the offline builder (numpy/pandas) and the online
store are imported on first use so ``fraudops features list`` stays fast.
"""

from __future__ import annotations

from typing import Any

from fraudops.features.definitions import REGISTRY, FeatureDefinition, FeatureRegistry, sync_registry
from fraudops.features.spec import FeatureSpec, resolve
from fraudops.native import enable as _enable_compiled

# Before ``semantics`` or ``online`` is imported (neither module above imports them): the
# mypyc-compiled online store, when it was built from these sources.
_enable_compiled(__path__)

_LAZY = {
    "build_offline": "fraudops.features.offline",
    "build_offline_from_warehouse": "fraudops.features.offline",
    "OnlineFeatureStore": "fraudops.features.online",
    "EmbeddedBackend": "fraudops.features.online",
    "RedisBackend": "fraudops.features.online",
    "run_parity": "fraudops.features.parity",
}

__all__ = [
    "REGISTRY",
    "EmbeddedBackend",
    "FeatureDefinition",
    "FeatureRegistry",
    "FeatureSpec",
    "OnlineFeatureStore",
    "RedisBackend",
    "build_offline",
    "build_offline_from_warehouse",
    "resolve",
    "run_parity",
    "sync_registry",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
