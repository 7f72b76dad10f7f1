"""One BigQuery code path for the local emulator and for real BigQuery.

``Warehouse`` wraps ``google.cloud.bigquery.Client`` with the few operations fraudops needs:
parameterised queries, idempotent writes by natural key, and schema management. Writes go through
a Parquet load into a staging table followed by a ``MERGE ... WHEN NOT MATCHED THEN INSERT``, so a
re-run never duplicates rows (BigQuery's insertId dedup is best effort; the emulator has none).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fraudops.config import WarehouseConfig, load_settings
from fraudops.exceptions import WarehouseError, WarehouseUnavailable
from fraudops.warehouse.schema import TABLES, TableSpec, get_table_spec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from google.cloud import bigquery

log = logging.getLogger(__name__)

_PA_TYPES = {
    "STRING": "string",
    "INT64": "int64",
    "FLOAT64": "float64",
    "BOOL": "bool_",
    "TIMESTAMP": "timestamp",
    "DATE": "date32",
}


def make_client(cfg: WarehouseConfig) -> bigquery.Client:
    """A BigQuery client for ``cfg``: anonymous against an emulator, ADC against Google."""
    from google.cloud import bigquery

    if cfg.is_emulator:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=cfg.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=cfg.endpoint),
            location=cfg.location,
        )
    return bigquery.Client(project=cfg.project, location=cfg.location)


def _param(name: str, value: Any) -> Any:
    from google.cloud import bigquery

    if isinstance(value, list | tuple):
        items = list(value)
        kind = _scalar_type(items[0]) if items else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, items)
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), value)


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


def _is_unavailable(err: Exception) -> bool:
    from google.api_core import exceptions as gexc
    from requests import exceptions as rexc

    return isinstance(
        err,
        rexc.ConnectionError
        | rexc.Timeout
        | gexc.ServiceUnavailable
        | gexc.RetryError
        | gexc.InternalServerError
        | gexc.GatewayTimeout
        | ConnectionError
        | TimeoutError,
    )


class Warehouse:
    """The project's dataset in BigQuery (or the emulator)."""

    def __init__(self, cfg: WarehouseConfig | None = None, client: bigquery.Client | None = None) -> None:
        self.cfg = cfg or load_settings().warehouse
        self._client = client

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def client(self) -> bigquery.Client:
        if self._client is None:
            self._client = make_client(self.cfg)
        return self._client

    def table_id(self, table: str) -> str:
        return self.cfg.table_id(table)

    def _retry(self) -> Any:
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        # Bounded: fail within the configured timeout so callers can spool instead of hanging
        # (the library default retries for 10 minutes). job_retry=None on query() for the same
        # reason: its insert-retry wrapper has a fixed 10-minute deadline of its own.
        return DEFAULT_RETRY.with_timeout(self.cfg.timeout_s)

    def _wrap(self, what: str, err: Exception) -> WarehouseError:
        if _is_unavailable(err):
            return WarehouseUnavailable(f"warehouse unreachable during {what}: {err}")
        return WarehouseError(f"{what} failed: {err}")

    # -- schema -----------------------------------------------------------------------------
    def ensure_schema(self, tables: Sequence[TableSpec] = TABLES) -> list[str]:
        """Create the dataset and tables, add missing columns. Idempotent; returns what changed."""
        from google.cloud import bigquery

        changes: list[str] = []
        try:
            ds = bigquery.Dataset(f"{self.cfg.project}.{self.cfg.dataset}")
            ds.location = self.cfg.location
            existing_ds = {d.dataset_id for d in self.client.list_datasets(retry=self._retry())}
            if self.cfg.dataset not in existing_ds:
                self.client.create_dataset(
                    ds, exists_ok=True, retry=self._retry(), timeout=self.cfg.timeout_s
                )
                changes.append(f"created dataset {self.cfg.dataset}")
            existing = {t.table_id for t in self.client.list_tables(self.cfg.dataset, retry=self._retry())}
            for spec in tables:
                if spec.name not in existing:
                    self.client.create_table(self._bq_table(spec), exists_ok=True, retry=self._retry())
                    changes.append(f"created table {spec.name}")
                    continue
                table = self.client.get_table(self.table_id(spec.name), retry=self._retry())
                have = {f.name for f in table.schema}
                new_fields = [self._bq_field(c) for c in spec.columns if c.name not in have]
                if new_fields:
                    for f in new_fields:
                        if f.mode == "REQUIRED":
                            raise WarehouseError(
                                f"cannot add REQUIRED column {f.name} to existing table {spec.name}"
                            )
                    table.schema = [*table.schema, *new_fields]
                    self.client.update_table(table, ["schema"], retry=self._retry())
                    changes.append(f"added {[f.name for f in new_fields]} to {spec.name}")
        except WarehouseError:
            raise
        except Exception as err:
            raise self._wrap("ensure_schema", err) from err
        return changes

    def _bq_field(self, col: Any) -> bigquery.SchemaField:
        from google.cloud import bigquery

        return bigquery.SchemaField(col.name, col.type, mode=col.mode, description=col.description)

    def _bq_table(self, spec: TableSpec) -> bigquery.Table:
        from google.cloud import bigquery

        table = bigquery.Table(self.table_id(spec.name), schema=[self._bq_field(c) for c in spec.columns])
        table.description = spec.description or None
        if spec.partition_field:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=spec.partition_field
            )
        if spec.clustering:
            table.clustering_fields = list(spec.clustering)
        return table

    def drop_dataset(self) -> None:
        self.client.delete_dataset(
            f"{self.cfg.project}.{self.cfg.dataset}",
            delete_contents=True,
            not_found_ok=True,
            retry=self._retry(),
            timeout=self.cfg.timeout_s,
        )

    # -- queries ----------------------------------------------------------------------------
    def _job_config(self, params: Mapping[str, Any] | None) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(
            query_parameters=[_param(k, v) for k, v in (params or {}).items()],
            default_dataset=f"{self.cfg.project}.{self.cfg.dataset}",
        )

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        """Submit ``sql`` and wait for it; both bounded by the configured timeout."""
        job = self.client.query(
            sql,
            job_config=self._job_config(params),
            retry=self._retry(),
            job_retry=None,
            timeout=self.cfg.timeout_s,
        )
        rows = job.result(retry=self._retry(), timeout=self.cfg.timeout_s)
        return job, rows

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run parameterised SQL (``@name`` placeholders); unqualified tables resolve in the dataset."""
        try:
            return [dict(row.items()) for row in self._run(sql, params)[1]]
        except Exception as err:
            raise self._wrap("query", err) from err

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        try:
            return self._run(sql, params)[1].to_dataframe(create_bqstorage_client=False)
        except Exception as err:
            raise self._wrap("query", err) from err

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        try:
            return self._run(sql, params)[1].to_arrow(create_bqstorage_client=False)
        except Exception as err:
            raise self._wrap("query", err) from err

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a DML/DDL statement; returns the number of affected rows when known."""
        try:
            job, _ = self._run(sql, params)
            return int(job.num_dml_affected_rows or 0)
        except Exception as err:
            raise self._wrap("execute", err) from err

    # -- idempotent writes ------------------------------------------------------------------
    def to_arrow(
        self, spec: TableSpec, rows: pd.DataFrame | pa.Table | Iterable[Mapping[str, Any]]
    ) -> pa.Table:
        """Coerce rows to the table's exact Arrow schema (all columns, right types, UTC timestamps)."""
        import pandas as pd
        import pyarrow as pa

        fields = []
        for col in spec.columns:
            kind = _PA_TYPES[col.type]
            typ = pa.timestamp("us", tz="UTC") if kind == "timestamp" else getattr(pa, kind)()
            fields.append(pa.field(col.name, typ, nullable=True))
        schema = pa.schema(fields)
        if isinstance(rows, pa.Table):
            table = rows
        elif isinstance(rows, pd.DataFrame):
            table = pa.Table.from_pandas(rows, preserve_index=False)
        else:
            # Column by column over the union of keys: ``Table.from_pylist`` takes the columns of
            # the *first* row only, so a batch whose first row lacks a key (a shadow row before
            # production rows) silently lost that column for every row.
            dicts = [dict(r) for r in rows]
            names = list(dict.fromkeys(k for r in dicts for k in r))
            table = (
                pa.table({n: pa.array([r.get(n) for r in dicts]) for n in names}) if dicts else pa.table({})
            )
        unknown = [n for n in table.column_names if n not in spec.column_names]
        if unknown:
            raise WarehouseError(f"rows for {spec.name} have unknown columns {unknown}")
        arrays = []
        for f in schema:
            if f.name in table.column_names:
                arr = table.column(f.name)
                if pa.types.is_timestamp(f.type) and pa.types.is_timestamp(arr.type) and arr.type.tz is None:
                    arr = arr.cast(pa.timestamp("us")).cast(f.type)  # naive means UTC here
                elif pa.types.is_timestamp(f.type) and (
                    pa.types.is_string(arr.type) or pa.types.is_null(arr.type)
                ):
                    arr = pa.array(
                        pd.to_datetime(
                            pd.Series(arr.to_pylist(), dtype="object"), utc=True, format="ISO8601"
                        ),
                        type=f.type,
                    )
                arrays.append(arr.cast(f.type))
            else:
                arrays.append(pa.nulls(table.num_rows, type=f.type))
        out = pa.Table.from_arrays(arrays, schema=schema)
        for col in spec.columns:
            if col.mode == "REQUIRED" and out.column(col.name).null_count:
                raise WarehouseError(f"{spec.name}.{col.name} is REQUIRED but has nulls")
        return out

    def upsert(
        self,
        table: str,
        rows: pd.DataFrame | pa.Table | Iterable[Mapping[str, Any]],
    ) -> int:
        """Insert rows whose natural key is not in ``table`` yet; returns rows inserted.

        Duplicates inside ``rows`` are collapsed (first wins). Safe to re-run with the same rows.
        """
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        from google.cloud import bigquery

        spec = get_table_spec(table)
        data = self.to_arrow(spec, rows)
        if data.num_rows == 0:
            return 0
        # Dedup within the batch on the key (stable: first occurrence wins).
        if len(spec.key) == 1:
            keys = data.column(spec.key[0])
        else:
            keys = pc.binary_join_element_wise(*[pc.cast(data.column(k), "string") for k in spec.key], "\x1f")
        first_idx = _first_occurrences(keys)
        if first_idx is not None:
            data = data.take(first_idx)

        staging = f"_stg_{spec.name}_{uuid.uuid4().hex[:12]}"
        staging_id = self.table_id(staging)
        buf = io.BytesIO()
        pq.write_table(data, buf)
        buf.seek(0)
        try:
            self.client.create_table(
                bigquery.Table(staging_id, schema=[self._bq_field(c) for c in spec.columns]),
                retry=self._retry(),
            )
            job = self.client.load_table_from_file(
                buf,
                staging_id,
                job_config=bigquery.LoadJobConfig(
                    source_format=bigquery.SourceFormat.PARQUET,
                    write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                ),
                num_retries=1,
                timeout=self.cfg.timeout_s,
            )
            job.result(retry=self._retry(), timeout=self.cfg.timeout_s)
            cols = ", ".join(f"`{c}`" for c in spec.column_names)
            vals = ", ".join(f"S.`{c}`" for c in spec.column_names)
            on = " AND ".join(f"T.`{k}` = S.`{k}`" for k in spec.key)
            merge = (
                f"MERGE `{self.table_id(spec.name)}` T USING `{staging_id}` S ON {on} "
                f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})"
            )
            mjob = self.client.query(merge, retry=self._retry(), job_retry=None, timeout=self.cfg.timeout_s)
            mjob.result(retry=self._retry(), timeout=self.cfg.timeout_s)
            inserted = mjob.num_dml_affected_rows
            return int(inserted) if inserted is not None else data.num_rows
        except Exception as err:
            raise self._wrap(f"upsert into {spec.name}", err) from err
        finally:
            try:
                self.client.delete_table(
                    staging_id, not_found_ok=True, retry=self._retry(), timeout=self.cfg.timeout_s
                )
            except Exception:  # cleanup is best effort; staging names are unique
                log.warning("could not drop staging table %s", staging_id)

    def count(self, table: str) -> int:
        rows = self.query(f"SELECT COUNT(*) AS n FROM `{self.table_id(get_table_spec(table).name)}`")
        return int(rows[0]["n"])

    def newest_event_time(self, table: str = "transactions") -> dt.datetime | None:
        """The newest ``event_time`` in ``table`` (UTC), None when it holds no rows.

        "Now" in event time: under the simulator's accelerated stream it is the simulated present,
        in production it trails the wall clock by the event log's micro-batch delay.
        """
        spec = get_table_spec(table)
        rows = self.query(f"SELECT MAX(event_time) AS t FROM `{self.table_id(spec.name)}`")
        value: dt.datetime | None = rows[0].get("t") if rows else None
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    def ping(self) -> bool:
        """True when the warehouse answers a trivial query."""
        try:
            self.query("SELECT 1 AS ok")
            return True
        except WarehouseError:
            return False


def _first_occurrences(keys: Any) -> pa.Array | None:
    """Row indices of the first occurrence of each key, in row order; None when keys are unique.

    Vectorised (Arrow hash aggregation): a per-row Python loop cost seconds per million rows.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(keys)
    if pc.count_distinct(keys, mode="all").as_py() == n:
        return None
    table = pa.table({"k": keys, "i": pa.array(np.arange(n, dtype=np.int64))})
    firsts = table.group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min").combine_chunks()
    return pc.array_take(firsts, pc.sort_indices(firsts))
