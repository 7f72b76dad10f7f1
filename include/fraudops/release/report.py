"""The release page's data and HTML: champion and challengers, gate decisions with their evidence,
the shadow comparison of the latest promotion decision, and fraud capture rate, false-positive
rate and money over (event) time. Plain functions over the warehouse and the registry, so the
Airflow plugin (``fraudops_airflow.release_page``) only serves what :func:`render_page` returns and
``fraudops releases`` / tests use the same numbers.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fraudops.vocabulary import Alias, Stage, is_challenger_alias

if TYPE_CHECKING:
    import pandas as pd

    from fraudops.warehouse import Warehouse

_DAILY_SQL = """
WITH p AS (
  SELECT transaction_id, decision, amount, event_time, model_version, fallback
  FROM `{predictions}`
  WHERE model_name = @model_name AND mode = 'production' AND event_time >= @since
  QUALIFY ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY served_at) = 1
),
l AS (
  SELECT transaction_id, LOGICAL_OR(is_fraud) AS is_fraud
  FROM `{labels}`
  GROUP BY transaction_id
)
SELECT
  TIMESTAMP_TRUNC(p.event_time, DAY) AS day,
  COUNT(*) AS events,
  COUNTIF(p.decision = 'decline') AS declines,
  COUNTIF(l.is_fraud) AS frauds,
  COUNTIF(l.is_fraud AND p.decision = 'decline') AS caught,
  COUNTIF(NOT COALESCE(l.is_fraud, FALSE) AND p.decision = 'decline') AS false_declines,
  SUM(IF(l.is_fraud, p.amount, 0)) AS fraud_money,
  SUM(IF(l.is_fraud AND p.decision = 'decline', p.amount, 0)) AS money_caught,
  SUM(IF(NOT COALESCE(l.is_fraud, FALSE) AND p.decision = 'decline', p.amount, 0)) AS false_decline_money,
  COUNTIF(p.fallback) AS fallbacks,
  MAX(p.model_version) AS model_version
FROM p
LEFT JOIN l ON l.transaction_id = p.transaction_id
GROUP BY day
ORDER BY day
"""

_DECISIONS_SQL = """
SELECT decision_id, stage, status, reason, challenger_version, champion_version, policy_version,
       evidence, dag_run_id, decided_at
FROM `{table}`
WHERE model_name = @model_name
ORDER BY decided_at DESC
LIMIT @limit
"""


@dataclass
class ReleaseOverview:
    model_name: str
    aliases: dict[str, str]
    version_tags: dict[str, dict[str, str]]
    decisions: list[dict[str, Any]]
    daily: pd.DataFrame
    generated_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    #: The scoring service's challengers now (``/version``): transport, sample rate, and for the
    #: stream transport the backlog (lag, pending, dead letters); None: the service was unreachable.
    shadow: dict[str, dict[str, Any]] | None = None

    @property
    def champion(self) -> str | None:
        return self.aliases.get(Alias.CHAMPION)

    @property
    def challengers(self) -> dict[str, str]:
        return {a: v for a, v in sorted(self.aliases.items()) if is_challenger_alias(a)}


def _quality(evidence_json: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(evidence_json or "{}")
    except ValueError:
        return {}
    return ((doc.get("evidence") or {}).get("quality")) or {}


def release_overview(
    warehouse: Warehouse, model_name: str, tracking_uri: str, *, days: int = 60, limit: int = 50
) -> ReleaseOverview:
    """Everything the release page shows, read from the warehouse and the MLflow registry."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from fraudops.release.evidence import event_clock

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    aliases: dict[str, str] = {}
    tags: dict[str, dict[str, str]] = {}
    try:
        aliases = {str(k): str(v) for k, v in (client.get_registered_model(model_name).aliases or {}).items()}
        for mv in client.search_model_versions(f"name='{model_name}'"):
            tags[str(mv.version)] = dict(mv.tags or {})
    except MlflowException:
        pass
    decisions = warehouse.query(
        _DECISIONS_SQL.format(table=warehouse.table_id("gate_decisions")),
        {"model_name": model_name, "limit": limit},
    )
    for row in decisions:
        row["quality"] = _quality(row.pop("evidence", None))
    latest = event_clock(warehouse, "predictions")
    daily = warehouse.query_df(
        _DAILY_SQL.format(predictions=warehouse.table_id("predictions"), labels=warehouse.table_id("labels")),
        {"model_name": model_name, "since": latest - dt.timedelta(days=days)},
    )
    return ReleaseOverview(model_name, aliases, tags, decisions, daily_rates(daily))


def daily_rates(daily: pd.DataFrame) -> pd.DataFrame:
    """Add capture rate, false-positive rate and money rates to the daily counts (pure)."""
    import numpy as np

    out = daily.copy()
    if out.empty:
        for col in ("capture_rate", "false_positive_rate", "decline_rate"):
            out[col] = []
        return out
    num = {c: out[c].astype("float64") for c in ("events", "frauds", "caught", "false_declines", "declines")}
    genuine = num["events"] - num["frauds"]
    out["capture_rate"] = np.where(
        num["frauds"] > 0, num["caught"] / num["frauds"].where(num["frauds"] > 0), np.nan
    )
    out["false_positive_rate"] = np.where(
        genuine > 0, num["false_declines"] / genuine.where(genuine > 0), np.nan
    )
    out["decline_rate"] = num["declines"] / num["events"]
    return out


# -- rendering ----------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _charts(overview: ReleaseOverview) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: dict[str, str] = {}
    d = overview.daily
    if not d.empty:
        days = [str(x)[:10] for x in d["day"]]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2))
        ax1.plot(days, d["capture_rate"], marker="o", label="fraud capture rate")
        ax1.plot(days, d["false_positive_rate"] * 100, marker="s", label="false-positive rate × 100")
        ax1.set_ylim(bottom=0)
        ax1.set_title("Production quality by event day (labels known so far)")
        ax1.legend(fontsize=8)
        ax2.bar(days, d["money_caught"].astype(float), label="fraud money caught")
        ax2.bar(days, -d["false_decline_money"].astype(float), label="genuine money declined")
        ax2.set_title("Money by event day")
        ax2.legend(fontsize=8)
        for ax in (ax1, ax2):
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        charts["daily"] = _png(fig)
        plt.close(fig)
    latest = next((r for r in overview.decisions if r["stage"] == Stage.PROMOTION and r["quality"]), None)
    if latest:
        q = latest["quality"]
        metrics = [
            ("AP", "ap_incumbent", "ap_candidate"),
            ("capture", "capture_incumbent", "capture_candidate"),
            ("FPR ×100", "fpr_incumbent", "fpr_candidate"),
        ]
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        xs = range(len(metrics))
        scale = [1.0, 1.0, 100.0]
        inc = [float(q.get(a) or 0) * s for (_, a, _), s in zip(metrics, scale, strict=True)]
        can = [float(q.get(b) or 0) * s for (_, _, b), s in zip(metrics, scale, strict=True)]
        ax.bar([x - 0.2 for x in xs], inc, width=0.4, label=f"champion v{latest['champion_version']}")
        ax.bar([x + 0.2 for x in xs], can, width=0.4, label=f"challenger v{latest['challenger_version']}")
        ax.set_xticks(list(xs), [m[0] for m in metrics])
        ax.set_title("Shadow comparison, same labeled events")
        ax.legend(fontsize=8)
        charts["shadow"] = _png(fig)
        plt.close(fig)
    return charts


def _fmt(x: Any, pattern: str = "{:.4f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    try:
        return pattern.format(x)
    except (TypeError, ValueError):
        return html.escape(str(x))


_STYLE = """
body{font-family:system-ui,sans-serif;margin:18px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
table{border-collapse:collapse;font-size:12.5px;width:100%} td,th{border-bottom:1px solid #e3e6ea;
padding:4px 6px;text-align:left;vertical-align:top} th{background:#f5f7f9}
.promote,.confirm{color:#0a7d32;font-weight:600}.reject,.rollback{color:#b3261e;font-weight:600}
.wait{color:#8a6d00}
.pill{display:inline-block;padding:2px 8px;border-radius:10px;background:#eef2f6;margin:2px}
.muted{color:#667085;font-size:12px} img{max-width:100%}
"""


def render_page(overview: ReleaseOverview) -> str:
    """The release page as one self-contained HTML document (charts inlined as PNG)."""
    e = html.escape
    charts = _charts(overview)
    pills = [f'<span class="pill">champion: <b>v{e(overview.champion or "none")}</b></span>']
    pills += [f'<span class="pill">{e(a)}: v{e(v)} (shadow)</span>' for a, v in overview.challengers.items()]
    rows = []
    for r in overview.decisions:
        q = r["quality"]
        status = e(str(r["status"]))
        rows.append(
            "<tr>"
            f"<td>{e(str(r['decided_at'])[:19])}</td><td>{e(str(r['stage']))}</td>"
            f"<td>v{e(str(r['challenger_version']))} vs v{e(str(r['champion_version']))}</td>"
            f'<td class="{status}">{status}</td><td>{e(str(r["reason"]))}</td>'
            f"<td>{_fmt(q.get('ap_delta'), '{:+.4f}')}</td>"
            f"<td>{_fmt(q.get('capture_candidate'), '{:.3f}')} / "
            f"{_fmt(q.get('capture_incumbent'), '{:.3f}')}</td>"
            f"<td>{_fmt(q.get('fpr_candidate'), '{:.4f}')} / {_fmt(q.get('fpr_incumbent'), '{:.4f}')}</td>"
            f"<td>{_fmt(q.get('money_caught_candidate'), '{:,.0f}')} / "
            f"{_fmt(q.get('money_caught_incumbent'), '{:,.0f}')}</td>"
            f"<td>{e(str(r['policy_version']))}</td></tr>"
        )
    table = (
        "<table><tr><th>decided (UTC)</th><th>stage</th><th>versions</th><th>status</th><th>reason</th>"
        "<th>ΔAP</th><th>capture new/old</th><th>FPR new/old</th><th>money caught new/old</th>"
        "<th>policy</th></tr>" + "".join(rows) + "</table>"
        if rows
        else '<p class="muted">No gate decisions yet.</p>'
    )
    shadow_rows = "".join(
        f"<tr><td>{e(a)}</td><td>v{e(str(w.get('version')))}</td>"
        f"<td>{e(str(w.get('transport', 'process')))}</td><td>{e(str(w.get('state')))}</td>"
        f"<td>{_fmt(w.get('sample_rate'), '{:.3f}')}</td>"
        f"<td>{_fmt(w.get('processed', w.get('mirrored')), '{:,}')}</td>"
        f"<td>{_fmt(w.get('shed'), '{:,}')}</td>"
        f"<td>{_fmt(w.get('lag'), '{:,}')}</td><td>{_fmt(w.get('pending'), '{:,}')}</td>"
        f"<td>{_fmt(w.get('dead_letters'), '{:,}')}</td>"
        f"<td>{_fmt(len(w['workers']) if isinstance(w.get('workers'), dict) else None, '{}')}</td></tr>"
        for a, w in sorted((overview.shadow or {}).items())
    )
    shadow_table = (
        '<p class="muted">The scoring service did not answer.</p>'
        if overview.shadow is None
        else (
            "<table><tr><th>alias</th><th>version</th><th>transport</th><th>state</th><th>sample rate</th>"
            "<th>scored / mirrored</th><th>shed</th><th>lag</th><th>pending</th><th>dead letters</th>"
            "<th>workers</th></tr>" + shadow_rows + "</table>"
            if shadow_rows
            else '<p class="muted">No challenger in shadow.</p>'
        )
    )
    daily_rows = "".join(
        f"<tr><td>{e(str(d.day)[:10])}</td><td>{int(d.events)}</td><td>{int(d.frauds)}</td>"
        f"<td>{_fmt(d.capture_rate, '{:.3f}')}</td><td>{_fmt(d.false_positive_rate, '{:.4f}')}</td>"
        f"<td>{_fmt(float(d.money_caught), '{:,.0f}')}</td>"
        f"<td>{_fmt(float(d.false_decline_money), '{:,.0f}')}</td>"
        f"<td>{int(d.fallbacks)}</td></tr>"
        for d in overview.daily.itertuples()
    )

    def img(key: str, alt: str) -> str:
        return f'<img alt="{alt}" src="{charts[key]}">' if key in charts else ""

    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fraudops releases</title>
<style>{_STYLE}</style></head><body>
<h1>fraudops releases — {e(overview.model_name)}</h1>
<div class="muted">generated {e(overview.generated_at)} · warehouse: gate_decisions, predictions, labels ·
registry: MLflow aliases</div>
<h2>Deployments</h2><div id="aliases">{"".join(pills)}</div>
<h2>Shadow pool now</h2><div id="shadow">{shadow_table}</div>
<h2>Shadow comparison (latest promotion decision)</h2>{
        img("shadow", "shadow comparison") or '<p class="muted">No decided promotion yet.</p>'
    }
<h2>Gate decisions</h2><div id="decisions">{table}</div>
<h2>Fraud capture, false positives and money over time</h2>{img("daily", "daily metrics")}
<table><tr><th>event day</th><th>events</th><th>labeled frauds</th><th>capture rate</th><th>FPR</th>
<th>money caught</th><th>genuine money declined</th><th>fallbacks</th></tr>{daily_rows}</table>
</body></html>"""
