"""Offline features: a point-in-time correct, vectorised build for training and evaluation.

``build_offline(transactions, labels, spec)`` gives every transaction the vector the online store
would have produced when it was scored (rules in :mod:`fraudops.features.semantics`): only
earlier events in (event_time, transaction_id) order, only labels with label_time strictly
before the event. Everything is numpy over integer microseconds and integer cents: one sort per
entity, ``searchsorted`` for window starts, prefix sums for window sums. Results are exact, so
parity with the online store is to the last bit (the tests allow 1e-9 relative).

``arrival_order`` (optional, one sortable value per row: smaller = arrived earlier) reproduces
the online store's view of an out-of-order stream: an event does not see an earlier-keyed event
that arrived after it. Contributions of such late events are subtracted exactly (integers), and
the few affected recency/novelty values are recomputed by a direct scan.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import DataValidationError, FeatureSpecError
from fraudops.features.definitions import (
    DELAYS_US,
    FAMILY_FEATURES,
    HORIZON_DAYS,
    HORIZON_US,
    LAG_FAMILIES,
    PRIOR_RATE,
    PRIOR_WEIGHT,
    WINDOWS_US,
    FeatureRegistry,
    families_for,
    lookback_days,
)
from fraudops.features.semantics import HORIZON_S, MIN_VAR_CENTS2, to_us
from fraudops.features.spec import FeatureSpec, resolve
from fraudops.warehouse.schema import TRANSACTION_FIELDS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from fraudops.warehouse import Warehouse

H1, D1, D7, D30 = WINDOWS_US["1h"], WINDOWS_US["1d"], WINDOWS_US["7d"], WINDOWS_US["30d"]
CARD_WINDOWS = (H1, D1, D7, D30)
COUNT_WINDOWS: dict[str, tuple[int, ...]] = {
    "terminal": (D1, D7, D30),
    "merchant": (D1, D7, D30),
    "region": (H1, D1),
    "device": (H1, D1),
}
_COLUMN = {
    "card": "card_id",
    "terminal": "terminal_id",
    "merchant": "merchant_id",
    "region": "region",
    "device": "device_id",
}
TX_COLUMNS = TRANSACTION_FIELDS
LABEL_COLUMNS = ("transaction_id", "event_time", "label_time", "is_fraud", "label_source")


def times_us(values: Any) -> np.ndarray:
    """Integer epoch microseconds (UTC) of a timestamp column (datetime64, aware, object or ISO)."""
    import numpy as np
    import pandas as pd

    s = pd.Series(values) if not isinstance(values, pd.Series) else values
    if not isinstance(s.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(s.dtype):
            s = s.dt.tz_localize("UTC")
        else:
            s = pd.to_datetime(s, utc=True, format="ISO8601")
    return np.asarray(s.dt.as_unit("us").astype("int64").to_numpy(), dtype=np.int64)


def _codes(values: Any) -> np.ndarray:
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    empty = np.flatnonzero(np.asarray(uniques, dtype=object) == "")
    if len(empty):  # an empty id is a missing id
        codes[codes == empty[0]] = -1
    return codes


def _key_order(t: np.ndarray, txid: np.ndarray) -> np.ndarray:
    """argsort by (t, transaction_id) with Python string order for ties (same as the online store)."""
    import numpy as np

    order = np.argsort(t, kind="stable")
    ts = t[order]
    tie = np.zeros(len(ts), dtype=bool)
    if len(ts) > 1:
        same = ts[1:] == ts[:-1]
        tie[1:] |= same
        tie[:-1] |= same
    if tie.any():
        slots = np.flatnonzero(tie)
        members = order[slots]
        ranked = sorted(zip(t[members].tolist(), txid[members].tolist(), members.tolist(), strict=True))
        order[slots] = np.fromiter((m for _, _, m in ranked), dtype=np.int64, count=len(ranked))
    return order


class _Groups:
    """One entity's events sorted by (entity, key): ``pos`` maps back to key order."""

    def __init__(self, codes: np.ndarray, t: np.ndarray) -> None:
        import numpy as np

        idx = np.flatnonzero(codes >= 0)
        # (entity, key order) as one unique int64: an unstable sort is then exact and faster.
        if len(idx) and int(codes[idx].max()) < (1 << 62) // max(len(codes), 1):
            o = np.argsort(codes[idx] * len(codes) + idx)
        else:
            o = np.argsort(codes[idx], kind="stable")
        self.pos = idx[o]
        self.g = codes[self.pos]
        self.t = t[self.pos]
        self.m = len(self.pos)
        self.j = np.arange(self.m, dtype=np.int64)
        self.inv = np.full(len(codes), -1, dtype=np.int64)
        self.inv[self.pos] = self.j

    def window_start(self, w: int) -> np.ndarray:
        """Index of the first same-entity event with t > t_i - w (group order)."""
        import numpy as np

        lo = np.zeros(self.m, dtype=np.int64)
        if self.m == 0:
            return lo
        base = int(self.t.min())
        off = int(self.t.max()) - base + w + 1
        per = max(1, (1 << 62) // off)
        gmax = int(self.g[-1])
        for g0 in range(0, gmax + 1, per):
            a = int(np.searchsorted(self.g, g0, "left"))
            b = int(np.searchsorted(self.g, g0 + per, "left"))
            if a == b:
                continue
            comp = (self.g[a:b] - g0) * off + (self.t[a:b] - base)
            lo[a:b] = a + np.searchsorted(comp, comp - w, side="right")
        return lo

    def previous_time(self) -> tuple[np.ndarray, np.ndarray]:
        """(has a previous same-entity event, its time) in group order."""
        import numpy as np

        has = np.zeros(self.m, dtype=bool)
        prev = np.zeros(self.m, dtype=np.int64)
        if self.m > 1:
            has[1:] = self.g[1:] == self.g[:-1]
            prev[1:] = self.t[:-1]
        return has, prev


def _novelty(card: np.ndarray, other: np.ndarray, t: np.ndarray) -> np.ndarray:
    """1.0 where the card has no earlier event with this value within the horizon (0 when null)."""
    import numpy as np

    out = np.zeros(len(t), dtype=np.float64)
    valid = (card >= 0) & (other >= 0)
    pair = np.full(len(t), -1, dtype=np.int64)
    pair[valid] = card[valid] * (int(other.max()) + 1 if len(other) else 1) + other[valid]
    grp = _Groups(pair, t)
    has, prev = grp.previous_time()
    seen = has & (prev > grp.t - HORIZON_US)
    out[grp.pos] = np.where(seen, 0.0, 1.0)
    return out


def _frauds(
    grp: _Groups, lab_g: np.ndarray, lab_e: np.ndarray, lab_l: np.ndarray, windows: tuple[int, ...]
) -> list[np.ndarray]:
    """Per event (group order): labels of the same entity with L < t and E > t - w, for each w."""
    import numpy as np

    out = [np.zeros(grp.m, dtype=np.int64) for _ in windows]
    if len(lab_g) == 0 or grp.m == 0:
        return out
    base = min(int(grp.t.min()), int(lab_e.min()))
    off = max(int(grp.t.max()), int(lab_l.max()), int(lab_e.max()) + max(windows)) - base + 1
    gmax = max(int(grp.g.max()), int(lab_g.max()))
    if gmax < (1 << 62) // off:
        # One composite (entity, time) axis: a single searchsorted per window for all entities.
        q = grp.g * off + (grp.t - base)
        g0 = grp.g * off
        for wi, w in enumerate(windows):
            ok = lab_l < lab_e + w
            ls = np.sort(lab_g[ok] * off + (lab_l[ok] - base))
            es = np.sort(lab_g[ok] * off + (lab_e[ok] + w - base))
            known = np.searchsorted(ls, q, "left") - np.searchsorted(ls, g0, "left")
            expired = np.searchsorted(es, q, "right") - np.searchsorted(es, g0, "left")
            out[wi] = known - expired
        return out
    order = np.argsort(lab_g, kind="stable")
    lab_g, lab_e, lab_l = lab_g[order], lab_e[order], lab_l[order]
    groups, starts = np.unique(lab_g, return_index=True)
    ends = np.append(starts[1:], len(lab_g))
    ev_a = np.searchsorted(grp.g, groups, "left")
    ev_b = np.searchsorted(grp.g, groups, "right")
    for gi in range(len(groups)):
        a, b = int(ev_a[gi]), int(ev_b[gi])
        if a == b:
            continue
        tq = grp.t[a:b]
        e, lt = lab_e[starts[gi] : ends[gi]], lab_l[starts[gi] : ends[gi]]
        for wi, w in enumerate(windows):
            # A label counts on (L, E + w): known after L, still in the window until E + w.
            ok = lt < e + w
            ls = np.sort(lt[ok])
            es = np.sort(e[ok] + w)
            out[wi][a:b] = np.searchsorted(ls, tq, "left") - np.searchsorted(es, tq, "right")
    return out


def _prepare_labels(
    labels: pd.DataFrame | None, txid: np.ndarray, codes: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Fraud labels (deduplicated, earliest label_time) with their transaction's entity codes."""
    import numpy as np
    import pandas as pd

    empty = {
        "e": np.zeros(0, np.int64),
        "l": np.zeros(0, np.int64),
        **{f: np.zeros(0, np.int64) for f in ("terminal", "merchant")},
    }
    if labels is None or len(labels) == 0:
        return empty
    fraud = labels.loc[labels["is_fraud"].astype(bool), ["transaction_id", "event_time", "label_time"]]
    if fraud.empty:
        return empty
    e = times_us(fraud["event_time"])
    lt = np.maximum(times_us(fraud["label_time"]), e)
    frame = pd.DataFrame({"k": fraud["transaction_id"].astype(str).to_numpy(), "e": e, "l": lt})
    frame = frame.sort_values("l", kind="stable").drop_duplicates("k", keep="first")
    where = pd.Index(txid).get_indexer(frame["k"].to_numpy())
    keep = where >= 0
    where = where[keep]
    out = {"e": frame["e"].to_numpy()[keep], "l": frame["l"].to_numpy()[keep]}
    for fam in ("terminal", "merchant"):
        out[fam] = codes[fam][where] if fam in codes else np.zeros(len(where), np.int64)
    return out


def build_offline(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None,
    spec: FeatureSpec | None = None,
    *,
    arrival_order: Any = None,
    registry: FeatureRegistry | None = None,
) -> pd.DataFrame:
    """Point-in-time features for every transaction: index transaction_id, columns = spec order."""
    import numpy as np
    import pandas as pd

    spec = spec or FeatureSpec.default(registry)
    resolve(spec, registry)
    fams = families_for(spec.names)
    missing = [
        c
        for c in ("transaction_id", "event_time", "card_id", "terminal_id", "amount")
        if c not in transactions.columns
    ]
    if missing:
        raise DataValidationError(f"transactions frame lacks columns {missing}")
    tx = transactions
    arrival = None if arrival_order is None else np.asarray(arrival_order)
    index = pd.Index(tx["transaction_id"].to_numpy(), name="transaction_id")
    if not index.is_unique:  # one row per transaction: the first wins (the warehouse key)
        dup = index.duplicated(keep="first")
        tx = tx.loc[~dup]
        index = index[~dup]
        if arrival is not None:
            arrival = arrival[~dup]
    n = len(tx)
    if index.inferred_type != "string":
        index = pd.Index(index.astype(str), name="transaction_id")
    txid_in = index.to_numpy()
    t_in = times_us(tx["event_time"])
    order = _key_order(t_in, txid_in)
    t = t_in[order]
    txid = txid_in[order]
    amount = tx["amount"].astype("float64").to_numpy()[order]
    cents = np.rint(amount * 100).astype(np.int64)
    codes = {
        f: _codes(tx[c].to_numpy())[order] if c in tx.columns else np.full(n, -1, np.int64)
        for f, c in _COLUMN.items()
    }
    arr = None
    late: np.ndarray = np.zeros(0, dtype=np.int64)
    if arrival is not None:
        # Arrival ranks; events arriving "at the same time" arrive in key order.
        arr = np.empty(n, dtype=np.int64)
        arr[np.argsort(arrival[order], kind="stable")] = np.arange(n, dtype=np.int64)
        if n > 1:
            sufmin = np.minimum.accumulate(arr[::-1])[::-1]
            late = np.flatnonzero(arr[:-1] > sufmin[1:])

    values: dict[str, np.ndarray] = {}
    if "tx" in fams:
        values["tx_amount"] = amount.copy()
        values["tx_hour_utc"] = ((t // 3_600_000_000) % 24).astype(np.float64)
    if "card" in fams:
        values.update(_card_family(t, cents, codes, arr, late))
    lab = _prepare_labels(labels, txid, codes) if {"terminal", "merchant"} & set(fams) else None
    groups: dict[str, _Groups] = {}
    for fam in ("terminal", "merchant", "region", "device"):
        if fam not in fams:
            continue
        grp = groups[fam] = _Groups(codes[fam], t)
        windows = COUNT_WINDOWS[fam]
        counts = [grp.j - grp.window_start(w) for w in windows]
        if len(late):
            _subtract_late(grp, late, arr, t, windows, counts)
        full = [np.zeros(n, dtype=np.float64) for _ in windows]
        for c, f in zip(counts, full, strict=True):
            f[grp.pos] = c
        names = FAMILY_FEATURES[fam]
        if fam == "region":
            ratio = np.divide(full[0] * 24.0, full[1], out=np.zeros(n), where=full[1] > 0)
            values.update(zip(names, (full[0], full[1], ratio), strict=True))
        elif fam == "device":
            values.update(zip(names, full, strict=True))
        else:
            assert lab is not None
            keep = lab[fam] >= 0
            f7, f30 = _frauds(grp, lab[fam][keep], lab["e"][keep], lab["l"][keep], (D7, D30))
            fr = [np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.float64)]
            fr[0][grp.pos] = f7
            fr[1][grp.pos] = f30
            r7 = np.divide(fr[0], full[1], out=np.zeros(n), where=full[1] > 0)
            r30 = np.divide(fr[1], full[2], out=np.zeros(n), where=full[2] > 0)
            values.update(zip(names, (full[0], full[1], fr[0], fr[1], r7, r30), strict=True))
    for fam in fams:
        if fam in LAG_FAMILIES:
            assert lab is not None
            values.update(_delayed_family(fam, groups[LAG_FAMILIES[fam][0]], lab, n))

    result = np.empty((n, len(spec)), dtype=np.float64)
    for ci, name in enumerate(spec.names):
        result[order, ci] = values[name]
    return pd.DataFrame(result, index=index, columns=spec.names)


def _delayed_family(fam: str, grp: _Groups, lab: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    """A delayed risk family: events of the entity in ``(t - d - w, t - d]`` and the fraud labels
    among them known before ``t``, as differences of the unshifted counts at ``d`` and ``d + w``."""
    import numpy as np

    ent, delay = LAG_FAMILIES[fam]
    d = DELAYS_US[delay]
    spans = (D1, D7, D30)
    upto_d = grp.window_start(d)  # first event with t_j > t - d
    counts = [upto_d - grp.window_start(d + w) for w in spans]
    keep = lab[ent] >= 0
    known = _frauds(grp, lab[ent][keep], lab["e"][keep], lab["l"][keep], (d, *(d + w for w in spans)))
    frauds = [k - known[0] for k in known[1:]]
    out: dict[str, np.ndarray] = {}
    prior = PRIOR_WEIGHT * PRIOR_RATE
    cols = [x.astype(np.float64) for x in (*counts, *frauds)]
    cols += [(f + prior) / (c + PRIOR_WEIGHT) for c, f in zip(cols[:3], cols[3:], strict=True)]
    for name, col in zip(FAMILY_FEATURES[fam], cols, strict=True):
        empty = (0.0 + prior) / (0.0 + PRIOR_WEIGHT) if "fraud_rate" in name else 0.0  # as lag_values
        full = np.full(n, empty, dtype=np.float64)
        full[grp.pos] = col
        out[name] = full
    return out


def _subtract_late(
    grp: _Groups,
    late: np.ndarray,
    arr: Any,
    t: np.ndarray,
    windows: tuple[int, ...],
    counts: list[np.ndarray],
    sums: list[np.ndarray] | None = None,
    cents: np.ndarray | None = None,
    sumsq: np.ndarray | None = None,
    touched: set[int] | None = None,
) -> None:
    """Remove each late event's contribution from the later-keyed events that arrived before it."""
    import numpy as np

    wmax = max(windows)
    for d in late.tolist():
        jd = int(grp.inv[d])
        if jd < 0:
            continue
        end = int(np.searchsorted(grp.g, grp.g[jd], "right"))
        hi = jd + 1 + int(np.searchsorted(grp.t[jd + 1 : end], t[d] + wmax, "left"))
        if hi <= jd + 1:
            continue
        js = np.arange(jd + 1, hi)
        js = js[arr[grp.pos[js]] < arr[d]]
        if len(js) == 0:
            continue
        if touched is not None:
            touched.update(js.tolist())
        gap = grp.t[js] - t[d]
        for wi, w in enumerate(windows):
            hit = js[gap < w]
            counts[wi][hit] -= 1
            if sums is not None and cents is not None:
                sums[wi][hit] -= cents[d]
                if sumsq is not None and w == wmax:
                    sumsq[hit] -= cents[d] * cents[d]


def _card_family(
    t: np.ndarray, cents: np.ndarray, codes: dict[str, np.ndarray], arr: Any, late: np.ndarray
) -> dict[str, np.ndarray]:
    import numpy as np

    n = len(t)
    grp = _Groups(codes["card"], t)
    cg = cents[grp.pos]
    csum = np.concatenate(([0], np.cumsum(cg)))
    qsum = np.concatenate(([0], np.cumsum(cg * cg)))
    counts, sums = [], []
    q30 = np.zeros(0)
    for w in CARD_WINDOWS:
        lo = grp.window_start(w)
        counts.append(grp.j - lo)
        sums.append(csum[grp.j] - csum[lo])  # int64 wrap-around cancels in the difference
        if w == D30:
            q30 = qsum[grp.j] - qsum[lo]
    has, prev = grp.previous_time()
    since_us = np.where(has, grp.t - prev, HORIZON_US)
    novelty = [_novelty(codes["card"], codes[f], t) for f in ("device", "terminal", "region")]
    if len(late):
        touched: set[int] = set()
        _subtract_late(grp, late, arr, t, CARD_WINDOWS, counts, sums, cents, q30, touched)
        if touched:
            _rescan_card(grp, sorted(touched), arr, since_us, novelty, codes)

    c = [x.astype(np.float64) for x in counts]
    s = [x.astype(np.float64) for x in sums]
    n30 = c[3]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c = np.where(n30 > 0, s[3] / n30, 0.0)
        var = np.where(n30 >= 2, q30.astype(np.float64) / n30 - mean_c * mean_c, 0.0)
        cur = cg.astype(np.float64)
        z = np.where((n30 >= 2) & (var > MIN_VAR_CENTS2), (cur - mean_c) / np.sqrt(np.maximum(var, 0)), 0.0)
        ratio = np.where((n30 > 0) & (mean_c > 0), cur / mean_c, 1.0)
    since = np.where(since_us < HORIZON_US, since_us.astype(np.float64) / 1e6, HORIZON_S)
    cols = [*c, *(x / 100.0 for x in s), mean_c / 100.0, z, ratio, since]
    out: dict[str, np.ndarray] = {}
    for name, col in zip(FAMILY_FEATURES["card"][:12], cols, strict=True):
        full = np.zeros(n, dtype=np.float64)
        full[grp.pos] = col
        out[name] = full
    for name, nov in zip(FAMILY_FEATURES["card"][12:], novelty, strict=True):
        out[name] = nov
    return out


def _rescan_card(
    grp: _Groups,
    touched: list[int],
    arr: Any,
    since_us: np.ndarray,
    novelty: list[np.ndarray],
    codes: dict[str, np.ndarray],
) -> None:
    """Recency/novelty of events whose visible history lost a late event: direct scan."""
    import numpy as np

    lo = grp.window_start(D30)
    for j in touched:
        i = int(grp.pos[j])
        span = np.arange(int(lo[j]), j)
        vis = span[arr[grp.pos[span]] < arr[i]]
        since_us[j] = grp.t[j] - grp.t[vis[-1]] if len(vis) else HORIZON_US
        for f, nov in zip(("device", "terminal", "region"), novelty, strict=True):
            mine = codes[f][i]
            if mine < 0:
                nov[i] = 0.0
            else:
                nov[i] = 0.0 if np.any(codes[f][grp.pos[vis]] == mine) else 1.0


# ---------------------------------------------------------------------------------------------
# Warehouse
# ---------------------------------------------------------------------------------------------
def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def load_window(
    warehouse: Warehouse,
    start: dt.datetime,
    end: dt.datetime,
    history_days: float = HORIZON_DAYS,
    labels_known_by: dt.datetime | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transactions in [start - history, end) and the fraud labels for them known before
    ``labels_known_by`` (default ``end``; training passes its later ``as_of``)."""
    start, end = _utc(start), _utc(end)
    known = _utc(labels_known_by) if labels_known_by is not None else end
    lo = start - dt.timedelta(days=history_days)
    tx = warehouse.query_df(
        f"SELECT {', '.join(TX_COLUMNS)} FROM `{warehouse.table_id('transactions')}` "
        "WHERE event_time >= @lo AND event_time < @hi",
        {"lo": lo, "hi": end},
    )
    labels = warehouse.query_df(
        f"SELECT {', '.join(LABEL_COLUMNS)} FROM `{warehouse.table_id('labels')}` "
        "WHERE is_fraud AND label_time < @known AND event_time >= @lo AND event_time < @hi",
        {"lo": lo, "hi": end, "known": known},
    )
    return tx, labels


def build_offline_from_warehouse(
    warehouse: Warehouse,
    start: dt.datetime,
    end: dt.datetime,
    spec: FeatureSpec | None = None,
    history_days: int | None = None,
) -> pd.DataFrame:
    """Features for transactions with event_time in [start, end), from the warehouse.

    History (``history_days`` before ``start``, default: the spec's look-back, 30 days plus its
    largest label delay) is read so windows are complete; labels are those known before ``end``
    (each event still only sees labels known before its own time).
    """
    need = lookback_days(families_for((spec or FeatureSpec.default()).names))
    history_days = need if history_days is None else history_days
    if history_days < need:
        raise FeatureSpecError(f"history_days must be >= {need} (the spec's longest look-back)")
    tx, labels = load_window(warehouse, start, end, history_days)
    feats = build_offline(tx, labels, spec)
    if len(tx) == 0:
        return feats
    t = times_us(tx.drop_duplicates("transaction_id")["event_time"])
    lo = to_us(_utc(start))
    return feats.loc[t >= lo]
