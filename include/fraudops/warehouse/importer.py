"""Import a user's historical transactions (CSV or Parquet) into the same tables the simulator fills.

All-or-nothing by construction: every row is validated first and, if any row is bad, the caller
gets every problem (1-based data row number, column, reason, value) and nothing is written. Good
files are written with the idempotent ``Warehouse.upsert``, so re-importing the same file never
duplicates rows; without a ``transaction_id`` column a deterministic id is derived from the row's
content (identical rows get distinct ids by occurrence), so a re-import maps onto the same keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudops.exceptions import DataValidationError
from fraudops.warehouse.schema import TRANSACTION_FIELDS

if TYPE_CHECKING:
    import pandas as pd

    from fraudops.warehouse import Warehouse

#: Fields a mapping may name (target → source column).
TX_FIELDS = TRANSACTION_FIELDS
LABEL_FIELDS: tuple[str, ...] = ("is_fraud", "label_time")
TARGETS: tuple[str, ...] = (*TX_FIELDS, *LABEL_FIELDS)
REQUIRED: tuple[str, ...] = ("event_time", "card_id", "terminal_id", "amount")

_TRUE = {"1", "true", "t", "yes", "y", "fraud", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "genuine", "legit", "0.0"}
_MAX_REPORTED = 50


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row number (the header is not counted)
    column: str
    reason: str
    value: str = ""

    def __str__(self) -> str:
        shown = f" (value {self.value!r})" if self.value != "" else ""
        return f"row {self.row}: {self.column}: {self.reason}{shown}"


@dataclass
class ImportResult:
    """What an import found and wrote."""

    path: Path
    rows: int
    errors: list[RowError] = field(default_factory=list)
    transactions: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None
    inserted_transactions: int = 0
    inserted_labels: int = 0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def bad_rows(self) -> list[int]:
        return sorted({e.row for e in self.errors})

    def report(self, limit: int = _MAX_REPORTED) -> str:
        if self.ok:
            n_lab = 0 if self.labels is None else len(self.labels)
            verb = "would write" if self.dry_run else "wrote"
            written = (
                f"{self.inserted_transactions} new transactions, {self.inserted_labels} new labels"
                if not self.dry_run
                else f"{self.rows} transactions, {n_lab} labels"
            )
            return f"{self.path}: {self.rows} rows valid; {verb} {written}"
        lines = [f"{self.path}: {len(self.bad_rows)} of {self.rows} rows are invalid; nothing was written."]
        lines += [f"  {e}" for e in self.errors[:limit]]
        if len(self.errors) > limit:
            lines.append(f"  ... {len(self.errors) - limit} more problems (see --reject-file)")
        return "\n".join(lines)


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["event_time=ts", "amount=amt"]`` → ``{"event_time": "ts", "amount": "amt"}``."""
    mapping: dict[str, str] = {}
    for item in items:
        target, sep, source = item.partition("=")
        target, source = target.strip(), source.strip()
        if not sep or not target or not source:
            raise DataValidationError(f"bad --map {item!r}: expected FIELD=COLUMN")
        if target not in TARGETS:
            raise DataValidationError(
                f"bad --map {item!r}: unknown field {target!r}; fields: {', '.join(TARGETS)}"
            )
        mapping[target] = source
    return mapping


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV (every cell as text, so validation sees what the file says) or Parquet."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise DataValidationError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[])
    except Exception as err:
        raise DataValidationError(f"{p}: cannot read: {err}") from err
    raise DataValidationError(f"{p}: unsupported file type {suffix!r} (use .csv or .parquet)")


def resolve_mapping(
    columns: Iterable[str], mapping: Mapping[str, str], label_time_col: str | None
) -> dict[str, str]:
    """Explicit mapping, plus columns already named like a field, plus sensible fallbacks."""
    cols = list(columns)
    resolved = {t: c for t, c in mapping.items()}
    if label_time_col:
        resolved["label_time"] = label_time_col
    for target in TARGETS:
        if target not in resolved and target in cols:
            resolved[target] = target
    missing_cols = sorted({c for c in resolved.values() if c not in cols})
    if missing_cols:
        raise DataValidationError(f"mapped columns not in the file: {missing_cols}; file columns: {cols}")
    # A file keyed by customer/merchant only: those ids stand in for card/terminal.
    if "card_id" not in resolved and "customer_id" in resolved:
        resolved["card_id"] = resolved["customer_id"]
    if "terminal_id" not in resolved and "merchant_id" in resolved:
        resolved["terminal_id"] = resolved["merchant_id"]
    missing = [t for t in REQUIRED if t not in resolved]
    if missing:
        raise DataValidationError(
            f"required fields not mapped: {missing}; use --map FIELD=COLUMN (file columns: {cols})"
        )
    return resolved


def _text(series: pd.Series) -> pd.Series:
    """Cells as stripped text; missing → ''."""
    return series.astype("string").fillna("").str.strip().astype(object)


def _parse_time(series: pd.Series) -> pd.Series:
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        s = pd.to_datetime(series)
        return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(series):  # epoch seconds (or milliseconds when huge)
        num = series.astype(float)
        unit = np.where(num.abs() > 1e11, 1e-3, 1.0)
        return pd.to_datetime(num * unit, unit="s", utc=True, errors="coerce")
    text = _text(series)
    parsed = pd.to_datetime(text.where(text != ""), utc=True, errors="coerce", format="ISO8601")
    retry = parsed.isna() & (text != "")
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    return parsed


def _parse_bool(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(values as True/False/None, mask of unparseable cells)."""
    import pandas as pd

    text = _text(series).str.lower()
    value = pd.Series([None] * len(text), index=text.index, dtype=object)
    value[text.isin(_TRUE)] = True
    value[text.isin(_FALSE)] = False
    bad = (text != "") & value.isna()
    return value, bad


def validate(
    df: pd.DataFrame,
    mapping: Mapping[str, str],
    *,
    label_time_col: str | None = None,
    source: str = "import",
) -> tuple[pd.DataFrame, pd.DataFrame, list[RowError]]:
    """Check every row; return (transactions, labels, errors) with warehouse column names."""
    import numpy as np
    import pandas as pd

    m = resolve_mapping(df.columns, mapping, label_time_col)
    df = df.reset_index(drop=True)
    n = len(df)
    rownum = np.arange(1, n + 1)
    errors: list[RowError] = []

    def flag(mask: Any, column: str, reason: str, values: pd.Series | None = None) -> None:
        for i in np.flatnonzero(np.asarray(mask)):
            shown = "" if values is None else str(values.iloc[i])
            errors.append(RowError(int(rownum[i]), column, reason, shown))

    out: dict[str, Any] = {}
    raw_time = df[m["event_time"]]
    event_time = _parse_time(raw_time)
    empty_time = _text(raw_time) == ""
    flag(empty_time, "event_time", "missing")
    flag(event_time.isna() & ~empty_time, "event_time", "not a timestamp", _text(raw_time))
    out["event_time"] = event_time

    raw_amount = df[m["amount"]]
    amount = pd.to_numeric(raw_amount, errors="coerce").astype(float)
    amount_text = _text(raw_amount)
    flag(amount_text == "", "amount", "missing")
    flag(amount.isna() & (amount_text != ""), "amount", "not a number", amount_text)
    flag(np.isinf(amount), "amount", "not finite", amount_text)
    flag(amount < 0, "amount", "negative", amount_text)
    out["amount"] = amount

    for target in ("card_id", "terminal_id"):
        ids = _text(df[m[target]])
        flag(ids == "", target, "missing id")
        out[target] = ids
    for target in TX_FIELDS:
        if target in out or target == "transaction_id" or target not in m:
            continue
        vals = _text(df[m[target]])
        out[target] = vals.where(vals != "", None)

    if "transaction_id" in m:
        tx_id = _text(df[m["transaction_id"]])
        flag(tx_id == "", "transaction_id", "missing id")
        dup = tx_id.duplicated(keep="first") & (tx_id != "")
        first_row = {v: i + 1 for i, v in reversed(list(enumerate(tx_id)))}
        for i in np.flatnonzero(dup.to_numpy()):
            errors.append(
                RowError(
                    int(rownum[i]),
                    "transaction_id",
                    f"duplicate (first at row {first_row[tx_id.iloc[i]]})",
                    tx_id.iloc[i],
                )
            )
    else:
        tx_id = _derived_ids(df, m)
    out["transaction_id"] = tx_id

    labels = None
    if "is_fraud" in m:
        is_fraud, bad = _parse_bool(df[m["is_fraud"]])
        flag(bad, "is_fraud", "not a boolean (use true/false, 1/0, yes/no)", _text(df[m["is_fraud"]]))
        if "label_time" in m:
            label_time = _parse_time(df[m["label_time"]])
            lt_text = _text(df[m["label_time"]])
            has_label = is_fraud.notna()
            flag(has_label & (lt_text == ""), "label_time", "missing for a labelled row")
            flag(label_time.isna() & (lt_text != ""), "label_time", "not a timestamp", lt_text)
            flag(label_time < event_time, "label_time", "before event_time", lt_text)
        else:
            label_time = event_time
        labelled = is_fraud.notna().to_numpy()
        labels = pd.DataFrame(
            {
                "transaction_id": tx_id[labelled].to_numpy(),
                "event_time": event_time[labelled].to_numpy(),
                "label_time": pd.Series(label_time)[labelled].to_numpy(),
                "is_fraud": is_fraud[labelled].astype(bool).to_numpy(),
                # The label's provenance is the import itself; ``source`` names the transactions' origin.
                "label_source": "import",
            }
        )
        for col in ("event_time", "label_time"):
            labels[col] = pd.to_datetime(labels[col], utc=True)

    errors.sort(key=lambda e: (e.row, TARGETS.index(e.column) if e.column in TARGETS else 99))
    tx = pd.DataFrame({c: out[c] for c in TX_FIELDS if c in out})
    tx["source"] = source
    return tx, labels if labels is not None else pd.DataFrame(), errors


def _derived_ids(df: pd.DataFrame, m: Mapping[str, str]) -> pd.Series:
    """Deterministic ids from the mapped content; repeated identical rows are told apart by occurrence."""
    import pandas as pd

    cols = [m[t] for t in TX_FIELDS if t in m and t != "transaction_id"]
    content = df[cols].astype("string").fillna("").agg("\x1f".join, axis=1)
    occurrence = content.groupby(content).cumcount().astype(str)
    keyed = content + "\x1e" + occurrence
    return pd.Series(
        ["imp-" + hashlib.sha1(k.encode()).hexdigest()[:24] for k in keyed], index=df.index, dtype=object
    )


def import_file(
    path: str | Path,
    mapping: Mapping[str, str],
    warehouse: Warehouse | None = None,
    *,
    label_time_col: str | None = None,
    source: str = "import",
    reject_file: str | Path | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Validate ``path`` and, when every row is good and not ``dry_run``, write it.

    Returns the result (with errors, if any) rather than raising, so callers can show the report;
    the CLI turns a result with errors into a non-zero exit.
    """
    df = read_table(path)
    tx, labels, errors = validate(df, mapping, label_time_col=label_time_col, source=source)
    result = ImportResult(
        path=Path(path), rows=len(df), errors=errors, transactions=tx, labels=labels, dry_run=dry_run
    )
    if errors:
        if reject_file is not None:
            write_rejects(df, errors, reject_file)
        return result
    if dry_run:
        return result
    if warehouse is None:
        from fraudops.warehouse import Warehouse

        warehouse = Warehouse()
    warehouse.ensure_schema()
    now = dt.datetime.now(dt.UTC)
    # Transactions before labels: a label never points at a missing transaction. Both writes are
    # idempotent, so if the second fails a re-run completes the import without duplicates.
    tx = tx.assign(ingested_at=now)
    result.inserted_transactions = warehouse.upsert("transactions", tx)
    if labels is not None and len(labels):
        result.inserted_labels = warehouse.upsert("labels", labels.assign(ingested_at=now))
    return result


def write_rejects(df: pd.DataFrame, errors: list[RowError], path: str | Path) -> Path:
    """Bad rows as in the file, plus ``row`` and ``reject_reason`` columns (CSV)."""
    import pandas as pd

    reasons: dict[int, list[str]] = {}
    for e in errors:
        reasons.setdefault(e.row, []).append(f"{e.column}: {e.reason}")
    rows = sorted(reasons)
    bad = df.reset_index(drop=True).iloc[[r - 1 for r in rows]].copy()
    bad.insert(0, "row", rows)
    bad["reject_reason"] = ["; ".join(reasons[r]) for r in rows]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(bad).to_csv(out, index=False)
    return out
