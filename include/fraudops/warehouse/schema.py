"""The warehouse model, defined once: every table fraudops writes, its columns, partitioning and key.

``ensure_schema`` creates the dataset and tables on first use and adds new columns to existing
tables (additive migrations only, the kind BigQuery allows in place). Later features add tables
by appending a ``TableSpec`` to ``TABLES``.

Nested/JSON payloads (feature vectors, evidence) are stored as JSON text in STRING columns: the
same representation works on BigQuery and on the local emulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # BigQuery standard SQL type: STRING, INT64, FLOAT64, BOOL, TIMESTAMP, DATE
    mode: str = "NULLABLE"  # NULLABLE or REQUIRED
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    #: Natural key: a row with the same key is the same fact; writers never duplicate it.
    key: tuple[str, ...]
    #: Day-partitioning column (TIMESTAMP), or None for small reference tables.
    partition_field: str | None = None
    clustering: tuple[str, ...] = ()
    description: str = ""
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(c.name for c in self.columns)
        object.__setattr__(self, "column_names", names)
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"table {self.name}: key columns {missing} are not columns")
        if self.partition_field and self.partition_field not in names:
            raise ValueError(f"table {self.name}: partition field {self.partition_field} is not a column")

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name} has no column {name}")


C = Column

TRANSACTIONS = TableSpec(
    name="transactions",
    description="Card transactions as seen at authorisation time (no label information).",
    key=("transaction_id",),
    partition_field="event_time",
    clustering=("card_id", "terminal_id"),
    columns=(
        C("transaction_id", "STRING", "REQUIRED", "Globally unique id of the authorisation."),
        C("event_time", "TIMESTAMP", "REQUIRED", "When the transaction happened (UTC)."),
        C("card_id", "STRING", "REQUIRED", "Card (payment instrument) id."),
        C("customer_id", "STRING", "NULLABLE", "Card holder / customer id."),
        C("terminal_id", "STRING", "REQUIRED", "Terminal (POS, web checkout) id."),
        C("merchant_id", "STRING", "NULLABLE", "Merchant owning the terminal."),
        C("merchant_category", "STRING", "NULLABLE", "Merchant category (MCC group)."),
        C("amount", "FLOAT64", "REQUIRED", "Amount in the transaction currency."),
        C("currency", "STRING", "NULLABLE", "ISO 4217 currency code."),
        C("region", "STRING", "NULLABLE", "Region where the transaction took place."),
        C("device_id", "STRING", "NULLABLE", "Device fingerprint (e-commerce/mobile)."),
        C("device_type", "STRING", "NULLABLE", "Device type: pos, desktop, ios, android, ..."),
        C("channel", "STRING", "NULLABLE", "card_present, ecommerce or mobile."),
        C("source", "STRING", "NULLABLE", "Where the row came from: simulator, import, api."),
        C("ingested_at", "TIMESTAMP", "NULLABLE", "When fraudops wrote the row."),
    ),
)

#: The business fields of a transaction (everything but provenance), in table order: what a user's
#: import maps, what feature builds read.
TRANSACTION_FIELDS: tuple[str, ...] = tuple(
    c for c in TRANSACTIONS.column_names if c not in ("source", "ingested_at")
)

LABELS = TableSpec(
    name="labels",
    description="Fraud labels; they arrive after the transaction (chargebacks days or weeks later).",
    key=("transaction_id",),
    partition_field="label_time",
    columns=(
        C("transaction_id", "STRING", "REQUIRED", "Transaction the label is about."),
        C("event_time", "TIMESTAMP", "REQUIRED", "When the labelled transaction happened."),
        C("label_time", "TIMESTAMP", "REQUIRED", "When the label became known to the platform."),
        C("is_fraud", "BOOL", "REQUIRED", "True for confirmed fraud, False for confirmed genuine."),
        C("label_source", "STRING", "NULLABLE", "chargeback, customer_report, analyst, import."),
        C("ingested_at", "TIMESTAMP", "NULLABLE", "When fraudops wrote the row."),
    ),
)

SIM_GROUND_TRUTH = TableSpec(
    name="sim_ground_truth",
    description=(
        "Simulator only: the true scenario behind every simulated fraud, including frauds whose "
        "label never arrives. Used for analysis and plots, never for features or training."
    ),
    key=("transaction_id",),
    partition_field="event_time",
    columns=(
        C("transaction_id", "STRING", "REQUIRED"),
        C("event_time", "TIMESTAMP", "REQUIRED"),
        C("scenario", "STRING", "REQUIRED", "compromised_terminal, card_testing, account_takeover, ..."),
        C("region", "STRING", "NULLABLE"),
        C("device_type", "STRING", "NULLABLE"),
        C("wave_id", "STRING", "NULLABLE", "Attack wave the fraud belongs to."),
        C("label_delay_hours", "FLOAT64", "NULLABLE", "Delay until labelled; NULL if never labelled."),
    ),
)

PREDICTIONS = TableSpec(
    name="predictions",
    description="Every score served, production and shadow, with the exact input vector.",
    key=("transaction_id", "model_name", "model_version", "mode"),
    partition_field="served_at",
    clustering=("model_version", "mode"),
    columns=(
        C("transaction_id", "STRING", "REQUIRED"),
        C("request_id", "STRING", "NULLABLE"),
        C("model_name", "STRING", "REQUIRED"),
        C("model_version", "STRING", "REQUIRED"),
        C("mode", "STRING", "REQUIRED", "production or shadow."),
        C("alias", "STRING", "NULLABLE", "Registry alias the model was serving under."),
        C("score", "FLOAT64", "NULLABLE", "Fraud probability; NULL when scoring failed."),
        C("decision", "STRING", "NULLABLE", "approve, review or decline."),
        C("latency_ms", "FLOAT64", "NULLABLE", "Model latency (features + inference) in ms."),
        C("fallback", "BOOL", "NULLABLE", "True when the previous champion answered."),
        C("error", "STRING", "NULLABLE", "Error class when scoring failed."),
        C("amount", "FLOAT64", "NULLABLE", "Transaction amount (for money metrics)."),
        C("event_time", "TIMESTAMP", "NULLABLE", "Transaction time."),
        C("feature_set", "STRING", "NULLABLE", "Feature spec id (names@versions hash)."),
        C("features", "STRING", "NULLABLE", "JSON array: the feature vector the model saw."),
        C("served_at", "TIMESTAMP", "REQUIRED"),
        C(
            "sampled",
            "BOOL",
            "NULLABLE",
            "Production rows: whether the event was mirrored to the shadow pool (the pairing base).",
        ),
        C(
            "sampled_for",
            "STRING",
            "NULLABLE",
            "Production rows: the challenger versions the event was offered to, as ',7,9,' (each "
            "has its own sample rate); NULL in rows from before per-challenger rates.",
        ),
    ),
)

DEPLOYMENTS = TableSpec(
    name="deployments",
    description="Audit of every registry alias move: who, what, when, why (intent first, then applied).",
    key=("deployment_id",),
    partition_field="deployed_at",
    columns=(
        C("deployment_id", "STRING", "REQUIRED"),
        C("model_name", "STRING", "REQUIRED"),
        C("alias", "STRING", "REQUIRED"),
        C("model_version", "STRING", "NULLABLE", "Version the alias points to after the move."),
        C("previous_version", "STRING", "NULLABLE", "Version it pointed to before (NULL if none)."),
        C(
            "action",
            "STRING",
            "REQUIRED",
            "bootstrap, shadow, promote, rollback, retire, confirm, sample_rate.",
        ),
        C("actor", "STRING", "NULLABLE", "User, DAG run or service that moved it."),
        C("reason", "STRING", "NULLABLE"),
        C("deployed_at", "TIMESTAMP", "REQUIRED"),
        C(
            "state",
            "STRING",
            "NULLABLE",
            "pending (intent recorded, move not confirmed yet) or applied; NULL = applied (older rows).",
        ),
    ),
)

GATE_DECISIONS = TableSpec(
    name="gate_decisions",
    description="Every promotion/probation decision with the policy version and its evidence.",
    key=("decision_id",),
    partition_field="decided_at",
    columns=(
        C("decision_id", "STRING", "REQUIRED"),
        C("model_name", "STRING", "REQUIRED"),
        C("challenger_version", "STRING", "NULLABLE"),
        C("champion_version", "STRING", "NULLABLE"),
        C("stage", "STRING", "REQUIRED", "promotion or probation."),
        C("policy_version", "STRING", "REQUIRED"),
        C("status", "STRING", "REQUIRED", "promote, reject, confirm, rollback."),
        C("reason", "STRING", "NULLABLE"),
        C("evidence", "STRING", "NULLABLE", "JSON: every check with value, threshold, passed."),
        C("dag_run_id", "STRING", "NULLABLE"),
        C("decided_at", "TIMESTAMP", "REQUIRED"),
    ),
)

DRIFT_METRICS = TableSpec(
    name="drift_metrics",
    description="Drift values per column and check (Evidently), for releases and hourly monitoring.",
    key=("run_id", "check", "column_name"),
    partition_field="computed_at",
    columns=(
        C("run_id", "STRING", "REQUIRED"),
        C("model_name", "STRING", "NULLABLE"),
        C("model_version", "STRING", "NULLABLE"),
        C("check", "STRING", "REQUIRED", "feature_drift, score_drift, champion_vs_challenger, ..."),
        C("column_name", "STRING", "REQUIRED"),
        C("method", "STRING", "NULLABLE", "Statistical test / distance used."),
        C("value", "FLOAT64", "NULLABLE"),
        C("threshold", "FLOAT64", "NULLABLE"),
        C("drifted", "BOOL", "NULLABLE"),
        C("window_start", "TIMESTAMP", "NULLABLE"),
        C("window_end", "TIMESTAMP", "NULLABLE"),
        C("computed_at", "TIMESTAMP", "REQUIRED"),
    ),
)

FEATURE_REGISTRY = TableSpec(
    name="feature_registry",
    description="Mirror of the feature store's registry: one row per feature version.",
    key=("name", "version"),
    columns=(
        C("name", "STRING", "REQUIRED"),
        C("version", "INT64", "REQUIRED"),
        C("entity", "STRING", "REQUIRED"),
        C("window", "STRING", "NULLABLE"),
        C("aggregation", "STRING", "NULLABLE"),
        C("description", "STRING", "NULLABLE"),
        C("owner", "STRING", "NULLABLE"),
        C("tags", "STRING", "NULLABLE", "JSON array of tags."),
        C("definition_hash", "STRING", "NULLABLE"),
        C("label_delay", "STRING", "NULLABLE", "Label delay a delayed risk window is shifted back by."),
        C("created_at", "TIMESTAMP", "NULLABLE"),
        C("registered_at", "TIMESTAMP", "NULLABLE"),
    ),
)

CONSOLE_ACTIONS = TableSpec(
    name="console_actions",
    description="Audit of every action in the model console or its API: who, what, on what, how it ended.",
    key=("action_id",),
    partition_field="acted_at",
    columns=(
        C("action_id", "STRING", "REQUIRED"),
        C("actor", "STRING", "REQUIRED", "The authenticated user."),
        C(
            "role",
            "STRING",
            "NULLABLE",
            "viewer, data_scientist or release_manager (from Airflow's auth manager).",
        ),
        C("action", "STRING", "REQUIRED", "upload, book, cancel_booking, approve, abort, rollback, ..."),
        C("target", "STRING", "NULLABLE", "What it acted on (file, model version, booking, run)."),
        C("outcome", "STRING", "REQUIRED", "ok, refused (with the reason in detail), forbidden or error."),
        C("detail", "STRING", "NULLABLE", "JSON: the request's parameters and the result or reason."),
        C("acted_at", "TIMESTAMP", "REQUIRED"),
    ),
)

SHADOW_BOOKINGS = TableSpec(
    name="shadow_bookings",
    description="Shadow-slot bookings of the model console: who booked which challenger for when, at "
    "which sample rate and cost, placed within the shadow pool's budget (fraudops.pipeline.booking).",
    key=("booking_id",),
    partition_field="created_at",
    columns=(
        C("booking_id", "STRING", "REQUIRED"),
        C("model_name", "STRING", "REQUIRED"),
        C("version", "STRING", "REQUIRED", "The challenger version."),
        C("booked_by", "STRING", "REQUIRED", "The console user."),
        C("start_at", "TIMESTAMP", "REQUIRED", "When the release starts (the placed start)."),
        C("end_at", "TIMESTAMP", "REQUIRED", "End of the booked shadow window."),
        C("sample_rate", "FLOAT64", "REQUIRED", "Share of live traffic the booking was costed at."),
        C("cpu_cores", "FLOAT64", "REQUIRED", "Estimated CPU while shadowing (rate × sample × latency)."),
        C("memory_mb", "FLOAT64", "REQUIRED", "Estimated memory of its shadow worker."),
        C("state", "STRING", "REQUIRED", "booked (at the requested start) or queued (later: pool full)."),
        C("requested_start_at", "TIMESTAMP", "REQUIRED"),
        C("dag_run_id", "STRING", "REQUIRED", "The fraud_release run it starts: booking__<id>."),
        C("created_at", "TIMESTAMP", "REQUIRED"),
        C(
            "release_conf",
            "STRING",
            "NULLABLE",
            "JSON: the conf of its fraud_release run (a moved booking's run is created again with it).",
        ),
    ),
)

TABLES: tuple[TableSpec, ...] = (
    TRANSACTIONS,
    LABELS,
    SIM_GROUND_TRUTH,
    PREDICTIONS,
    DEPLOYMENTS,
    GATE_DECISIONS,
    DRIFT_METRICS,
    FEATURE_REGISTRY,
    CONSOLE_ACTIONS,
    SHADOW_BOOKINGS,
)

TABLES_BY_NAME: dict[str, TableSpec] = {t.name: t for t in TABLES}


def get_table_spec(name: str) -> TableSpec:
    try:
        return TABLES_BY_NAME[name]
    except KeyError as err:
        raise KeyError(f"unknown warehouse table {name!r}; known: {sorted(TABLES_BY_NAME)}") from err
