"""Offline vs online parity: the same events through both paths must give the same vectors.

``run_parity`` streams the events through an ``OnlineFeatureStore`` in arrival order, adding each
fraud label just before the first event later than its label_time (labels are facts known at
label_time), and compares every vector with ``build_offline`` over the same frames and arrival
order. ``synthetic_events`` is a small deterministic generator with the awkward cases built in
(same-timestamp events, labels landing on event timestamps, missing devices/regions); the
command ``fraudops features parity`` uses the project's simulator instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraudops.features.spec import FeatureSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from fraudops.features.online import EmbeddedBackend, RedisBackend

TOLERANCE = 1e-9


@dataclass(frozen=True)
class ParityResult:
    events: int
    features: int
    mismatches: int
    max_rel_diff: float
    worst_transaction: str | None
    worst_feature: str | None
    offline_value: float | None
    online_value: float | None
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def describe(self) -> str:
        head = (
            f"parity {'OK' if self.ok else 'FAILED'}: {self.events} events x {self.features} features, "
            f"{self.mismatches} mismatches, max relative difference {self.max_rel_diff:.3g}"
        )
        if self.worst_transaction is not None:
            head += (
                f" at transaction {self.worst_transaction} feature {self.worst_feature} "
                f"(offline {self.offline_value!r}, online {self.online_value!r})"
            )
        return head


def stream_online(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None,
    spec: FeatureSpec | None = None,
    backend: EmbeddedBackend | RedisBackend | None = None,
    arrival_order: Sequence[Any] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Vectors of the online store for every transaction, fed in arrival order."""
    import numpy as np
    import pandas as pd

    from fraudops.features.offline import _key_order, times_us
    from fraudops.features.online import OnlineFeatureStore, labels_from_frame

    store = OnlineFeatureStore(spec, backend=backend)
    tx = transactions.reset_index(drop=True)
    t = times_us(tx["event_time"])
    order = _key_order(t, tx["transaction_id"].astype(str).to_numpy())
    if arrival_order is not None:  # ties in arrival are broken by key order (as offline)
        order = order[np.argsort(np.asarray(arrival_order)[order], kind="stable")]
    label_rows = sorted(labels_from_frame(labels, tx) if labels is not None else [], key=lambda r: r[2])
    records = tx.to_dict("records")
    li = 0
    out = np.empty((len(tx), len(store.spec)), dtype=np.float64)
    for i in order.tolist():
        ti = int(t[i])
        while li < len(label_rows) and max(label_rows[li][2], label_rows[li][1]) < ti:
            k, e, lt, te, m = label_rows[li]
            store.backend.add_label(k, e, lt, te, m)
            li += 1
        out[i] = store.update_and_vector(records[i])
    return pd.DataFrame(
        out, index=pd.Index(tx["transaction_id"].astype(str), name="transaction_id"), columns=store.spec.names
    )


def compare(offline: pd.DataFrame, online: pd.DataFrame, tolerance: float = TOLERANCE) -> ParityResult:
    import numpy as np

    online = online.loc[offline.index, list(offline.columns)]
    a = offline.to_numpy(dtype=np.float64)
    b = online.to_numpy(dtype=np.float64)
    diff = np.abs(a - b)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
    rel = np.where(diff == 0, 0.0, diff / scale)
    rel = np.where(np.isnan(a) | np.isnan(b), np.where(np.isnan(a) & np.isnan(b), 0.0, np.inf), rel)
    if rel.size == 0:
        return ParityResult(0, a.shape[1] if a.ndim == 2 else 0, 0, 0.0, None, None, None, None, tolerance)
    worst = np.unravel_index(int(np.argmax(rel)), rel.shape)
    mx = float(rel[worst])
    return ParityResult(
        events=a.shape[0],
        features=a.shape[1],
        mismatches=int((rel > tolerance).sum()),
        max_rel_diff=mx,
        worst_transaction=str(offline.index[worst[0]]) if mx > 0 else None,
        worst_feature=str(offline.columns[worst[1]]) if mx > 0 else None,
        offline_value=float(a[worst]) if mx > 0 else None,
        online_value=float(b[worst]) if mx > 0 else None,
        tolerance=tolerance,
    )


def run_parity(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None,
    spec: FeatureSpec | None = None,
    backend: EmbeddedBackend | RedisBackend | None = None,
    arrival_order: Sequence[Any] | np.ndarray | None = None,
    tolerance: float = TOLERANCE,
) -> ParityResult:
    from fraudops.features.offline import build_offline

    offline = build_offline(transactions, labels, spec, arrival_order=arrival_order)
    online = stream_online(transactions, labels, spec, backend, arrival_order)
    return compare(offline, online, tolerance)


def synthetic_events(
    n: int = 5000,
    seed: int = 0,
    days: float = 10.0,
    start: Any = None,
    n_cards: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic transactions + labels frames in the warehouse schema (for tests/benchmarks)."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    n_cards = n_cards or max(5, n // 25)
    n_terms = max(3, n // 60)
    secs = np.sort(rng.integers(0, int(days * 86400), size=n))
    # Same-timestamp clusters: a few percent of events share their predecessor's second.
    same = rng.random(n) < 0.05
    secs[1:][same[1:]] = secs[:-1][same[1:]]
    card = rng.integers(0, n_cards, size=n)
    term = np.where(rng.random(n) < 0.7, card % n_terms, rng.integers(0, n_terms, size=n))
    regions = np.array(["eu-west", "eu-north", "us-east", "us-west", "apac-south", "latam"])
    region_idx = np.where(rng.random(n) < 0.85, card % len(regions), rng.integers(0, len(regions), size=n))
    device_types = np.array(["pos", "desktop", "ios", "android"])
    dtype_idx = rng.integers(0, 4, size=n)
    device = np.where(  # type: ignore[call-overload]  # numpy stubs reject None
        dtype_idx == 0,
        None,
        np.char.add(
            "dev-",
            np.where(rng.random(n) < 0.8, card * 2 + (dtype_idx % 2), rng.integers(0, n, size=n)).astype(str),
        ).astype(object),
    )
    amount = np.round(np.exp(rng.normal(3.5, 1.0, size=n)), 2)
    amount[rng.random(n) < 0.02] = 9.99  # repeated identical amounts (zero-variance histories)
    ids = [f"tx-{i:07d}-{rng.integers(0, 1 << 30):08x}" for i in range(n)]
    rng.shuffle(ids)  # ids are not in time order: ties are broken by id, not by position
    event_time = pd.to_datetime(secs, unit="s", utc=True) + pd.Timedelta(
        start - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    )
    channel = np.where(dtype_idx == 0, "card_present", np.where(dtype_idx == 1, "ecommerce", "mobile"))
    tx = pd.DataFrame(
        {
            "transaction_id": ids,
            "event_time": event_time,
            "card_id": [f"card-{c}" for c in card],
            "customer_id": [f"cust-{c}" for c in card],
            "terminal_id": [f"term-{x}" for x in term],
            "merchant_id": [f"merch-{x // 3}" for x in term],
            "merchant_category": "retail",
            "amount": amount,
            "currency": "EUR",
            "region": np.where(rng.random(n) < 0.03, None, regions[region_idx]).astype(object),  # type: ignore[call-overload]
            "device_id": device,
            "device_type": device_types[dtype_idx],
            "channel": channel,
        }
    )
    is_fraud = rng.random(n) < 0.06
    labelled = is_fraud | (rng.random(n) < 0.05)
    delay_s = np.where(rng.random(n) < 0.1, 0, rng.exponential(2 * 86400, size=n).astype(np.int64))
    label_secs = secs + delay_s
    # Some labels land exactly on another event's timestamp (strict label_time < t matters).
    snap = rng.random(n) < 0.2
    label_secs = np.where(snap, secs[np.minimum(np.searchsorted(secs, label_secs), n - 1)], label_secs)
    label_secs = np.maximum(label_secs, secs)
    idx = np.flatnonzero(labelled)
    labels = pd.DataFrame(
        {
            "transaction_id": [ids[i] for i in idx],
            "event_time": event_time[idx],
            "label_time": pd.to_datetime(label_secs[idx], unit="s", utc=True)
            + pd.Timedelta(start - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
            "is_fraud": is_fraud[idx],
            "label_source": "chargeback",
        }
    )
    return tx, labels
