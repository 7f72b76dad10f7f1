"""Feature specs: the ordered (name, version) list a model artifact declares it needs.

A spec travels inside the model artifact as JSON (``to_dict``/``from_dict``); its ``id``
(``fs-<12 hex>``) is a stable hash of the ordered list and is logged next to every prediction.
``resolve`` checks a spec against the registry and names *every* missing or version-mismatched
feature at once, so a broken artifact is refused with one clear message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fraudops.exceptions import FeatureSpecError
from fraudops.features.definitions import DELAYS_US, REGISTRY, FeatureDefinition, FeatureRegistry

SPEC_FORMAT = 1


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered (name, version) pairs; the store produces exactly this vector or refuses."""

    features: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        names = [n for n, _ in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FeatureSpecError(f"feature spec lists {dupes} more than once")
        if not self.features:
            raise FeatureSpecError("feature spec is empty")

    @classmethod
    def from_names(cls, names: Iterable[str], registry: FeatureRegistry | None = None) -> FeatureSpec:
        """A spec pinning the registry's current active version of each name (in the given order)."""
        reg = registry or REGISTRY
        names = list(names)
        missing = [n for n in names if not reg.versions(n)]
        if missing:
            raise FeatureSpecError(f"unknown features: {', '.join(missing)}")
        return cls(tuple((n, reg.get(n).version) for n in names))

    @classmethod
    def default(cls, registry: FeatureRegistry | None = None, *, delay: str | None = None) -> FeatureSpec:
        """Every active feature of the registry, in registry order: those without a label delay,
        plus the delayed risk features of ``delay`` (one of ``RISK_DELAYS``) when given."""
        reg = registry or REGISTRY
        if delay is not None and delay not in DELAYS_US:
            raise FeatureSpecError(f"unknown label delay {delay!r}; registered: {', '.join(DELAYS_US)}")
        return cls(tuple((d.name, d.version) for d in reg.active() if d.delay in (None, delay)))

    @classmethod
    def every(cls, registry: FeatureRegistry | None = None) -> FeatureSpec:
        """Every active feature, the delayed risk features of every delay included (parity checks)."""
        reg = registry or REGISTRY
        return cls(tuple((d.name, d.version) for d in reg.active()))

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.features]

    @property
    def id(self) -> str:
        payload = json.dumps([[n, v] for n, v in self.features], separators=(",", ":"))
        return "fs-" + hashlib.sha256(payload.encode()).hexdigest()[:12]

    def __len__(self) -> int:
        return len(self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SPEC_FORMAT,
            "id": self.id,
            "features": [{"name": n, "version": v} for n, v in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        try:
            feats = tuple((str(f["name"]), int(f["version"])) for f in data["features"])
        except (KeyError, TypeError, ValueError) as err:
            raise FeatureSpecError(f"malformed feature spec: {err!r}") from err
        spec = cls(feats)
        if "id" in data and data["id"] != spec.id:
            raise FeatureSpecError(f"feature spec id {data['id']} does not match its features ({spec.id})")
        return spec


def resolve(spec: FeatureSpec, registry: FeatureRegistry | None = None) -> list[FeatureDefinition]:
    """The definitions of ``spec`` in order, or ``FeatureSpecError`` naming every problem."""
    reg = registry or REGISTRY
    problems: list[str] = []
    out: list[FeatureDefinition] = []
    for name, version in spec.features:
        found = reg.versions(name)
        if not found:
            problems.append(f"{name}@v{version}: missing (no such feature in the registry)")
            continue
        match = [d for d in found if d.version == version]
        if not match:
            have = ", ".join(f"v{d.version}" for d in found)
            problems.append(f"{name}@v{version}: version mismatch (store has {have})")
            continue
        if not match[0].active:
            problems.append(f"{name}@v{version}: retired (no longer computed)")
            continue
        out.append(match[0])
    if problems:
        raise FeatureSpecError(f"feature spec {spec.id} cannot be served: " + "; ".join(problems))
    return out
