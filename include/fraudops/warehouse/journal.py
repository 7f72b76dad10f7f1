"""A durable spool: rows are appended to local segment files before they are acknowledged, and
shipped to the warehouse from there.

Why: the scoring service answers a request and only then could its prediction row be lost (an
in-memory buffer dies with a SIGKILL). Here the row is ``write()``n to an append-only segment file
*before* the answer goes out, so a killed process loses nothing it acknowledged: the kernel holds
the bytes, and the next logger on the same folder ships them. A separate shipper reads sealed
segments oldest first, sends them with ``Warehouse.upsert`` (a keyed MERGE, so a replay after a
crash between "warehouse accepted" and "segment deleted" inserts nothing twice), and deletes a
segment only after the warehouse accepted it.

Files in the spool folder (names sort by creation time)::

    seg-<time_ns>-<pid>-<seq>.jsonl.open   being appended to by process <pid> (one JSON row a line)
    seg-<time_ns>-<pid>-<seq>.jsonl        sealed: waiting to be shipped
    *.parquet                              left by the earlier in-memory writer (before round 2): shipped too
    quarantine/                            what could not be shipped, with a ``.reason`` file each

Durability: a process kill (SIGKILL, OOM killer, crash) loses no appended row. A power loss or
kernel crash can lose what was appended since the last group ``fsync`` (``fsync_interval_s``,
done off the hot path by the owner's background thread) plus the time one fsync takes; each
sealed segment and the folder are fsynced by the same thread.

Corruption never blocks the queue: a line that is not a JSON object (garbage bytes, a torn final
record) is cut out into the quarantine folder with its reason and the rest of the segment ships;
a segment with no readable line at all is moved there whole; rows the warehouse schema cannot
take (a string where a number goes) are found by bisection and quarantined one by one; a segment
a shipper died on ``max_crashes`` times in a row is quarantined whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from fraudops.exceptions import WarehouseUnavailable
from fraudops.warehouse.client import Warehouse
from fraudops.warehouse.schema import get_table_spec

log = logging.getLogger(__name__)

OPEN_SUFFIX = ".jsonl.open"
SEALED_SUFFIX = ".jsonl"
QUARANTINE = "quarantine"
_INFLIGHT = ".inflight"
_CRASHES = ".crashes"
_DUMP = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


def _json_default(value: Any) -> Any:
    # Never raise on the hot path: an odd value is written as text, and if the warehouse cannot
    # take that text the shipper quarantines the row (counted) instead of the writer losing it.
    item = getattr(value, "item", None)
    if callable(item):
        with contextlib.suppress(Exception):
            return item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def encode_row(row: Mapping[str, Any]) -> bytes:
    """One spool line (JSON object + newline); never raises for an odd value."""
    try:
        return orjson.dumps(row, default=_json_default, option=_DUMP)
    except TypeError:  # non-str keys, recursion: keep the row, as text the shipper will reject
        return orjson.dumps({str(k): repr(v) for k, v in row.items()}, option=_DUMP)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if "zombie" in Path(f"/proc/{pid}/status").read_text().lower():
            return False
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def adopt_orphans(spool_dir: Path) -> int:
    """Seal open segments whose writer process is dead (a killed service); returns how many."""
    n = 0
    for path in sorted(Path(spool_dir).glob(f"*{OPEN_SUFFIX}")):
        try:
            pid = int(path.name.split("-")[2])
        except (IndexError, ValueError):
            pid = -1
        if pid == os.getpid() or (pid > 0 and _pid_alive(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name(path.name[: -len(OPEN_SUFFIX)] + SEALED_SUFFIX))
            n += 1
    if n:
        log.warning("adopted %d spool segment(s) left open by a dead process", n)
    return n


class SpoolJournal:
    """The append side (hot path): ``append(row)`` returns once the row is in the OS.

    Thread-safe (one lock around a ``write`` syscall). ``rotate`` seals the open segment when it is
    older than ``max_age_s``; ``sync`` fsyncs; the owner calls both from a background thread.
    """

    def __init__(self, spool_dir: Path, *, max_rows: int = 10_000, max_age_s: float = 3.0) -> None:
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.appended = 0
        self.sealed = 0
        self.errors = 0
        self.lost = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._fd = -1
        self._path: Path | None = None
        self._opened_at = 0.0
        self._rows = 0
        self._seq = 0
        self._unsynced: list[Path] = []
        self._backlog: list[bytes] = []  # lines a failed write (disk full) still owes the disk
        self.max_backlog = 100_000

    # -- hot path ---------------------------------------------------------------------------
    def append(self, row: Mapping[str, Any]) -> None:
        line = encode_row(row)
        with self._lock:
            try:
                if self._backlog:
                    self._write_locked(b"".join(self._backlog))
                    self._backlog.clear()
                self._write_locked(line)
                self.appended += 1
            except OSError as err:  # disk full or gone: keep the row in memory, count, go on
                self.errors += 1
                self.last_error = f"spool write: {err}"[:500]
                if len(self._backlog) < self.max_backlog:
                    self._backlog.append(line)
                else:
                    self.lost += 1
                if self.errors & (self.errors - 1) == 0:  # 1, 2, 4, 8 ...: loud, not a flood
                    log.error("prediction spool write failed (%d times): %s", self.errors, err)
                return
            if self._rows >= self.max_rows:
                self._seal_locked()

    def _write_locked(self, data: bytes) -> None:
        if self._fd < 0:
            self._seq += 1
            name = f"seg-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{OPEN_SUFFIX}"
            self._path = self.spool_dir / name
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
            self._opened_at = time.monotonic()
            self._rows = 0
        view = memoryview(data)
        while view:  # a regular file takes the whole write unless the disk fills up
            view = view[os.write(self._fd, view) :]
        self._rows += data.count(b"\n")

    def _seal_locked(self) -> None:
        if self._fd < 0 or self._path is None:
            return
        os.close(self._fd)
        self._fd = -1
        sealed = self._path.with_name(self._path.name[: -len(OPEN_SUFFIX)] + SEALED_SUFFIX)
        os.replace(self._path, sealed)
        self._unsynced.append(sealed)
        self._path = None
        self.sealed += 1

    # -- background (owner's thread) ---------------------------------------------------------
    def seal(self) -> None:
        """Seal the open segment (the shipper takes sealed segments only)."""
        with self._lock:
            self._seal_locked()

    def rotate(self) -> None:
        with self._lock:
            if self._fd >= 0 and time.monotonic() - self._opened_at >= self.max_age_s:
                self._seal_locked()

    def sync(self) -> None:
        """Group fsync: the open segment, segments sealed since the last call, the folder."""
        with self._lock:
            fd = os.dup(self._fd) if self._fd >= 0 else -1  # a dup: rotation may close ours meanwhile
            sealed, self._unsynced = self._unsynced, []
        try:
            if fd >= 0:
                os.fdatasync(fd)
            for path in sealed:
                with contextlib.suppress(FileNotFoundError):  # already shipped and deleted
                    sfd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(sfd)
                    finally:
                        os.close(sfd)
            if fd >= 0 or sealed:
                _fsync_dir(self.spool_dir)
        finally:
            if fd >= 0:
                os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._backlog:
                with contextlib.suppress(OSError):
                    self._write_locked(b"".join(self._backlog))
                    self._backlog.clear()
            self._seal_locked()
        self.sync()

    @property
    def backlog(self) -> int:
        return len(self._backlog)


@dataclass
class ShipStats:
    """What the shipper did since it started (sent to the owner as deltas)."""

    shipped_rows: int = 0
    shipped_files: int = 0
    replayed_rows: int = 0
    retried: int = 0
    recovered_rows: int = 0
    quarantined_rows: int = 0
    quarantined_files: int = 0
    failed_writes: int = 0

    def minus(self, other: ShipStats) -> ShipStats:
        return ShipStats(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})


@dataclass
class Segment:
    path: Path
    rows: list[dict[str, Any]]
    rejected: list[tuple[bytes, str]]  # (raw line, reason)


class SpoolShipper:
    """The shipping side: sealed segments -> ``Warehouse.upsert`` -> delete (oldest first)."""

    def __init__(
        self,
        warehouse: Warehouse,
        table: str,
        spool_dir: Path,
        *,
        max_rows_per_load: int = 50_000,
        retry_interval_s: float = 5.0,
        max_crashes: int = 3,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.table = get_table_spec(table).name
        self.spool_dir = Path(spool_dir)
        self.quarantine_dir = self.spool_dir / QUARANTINE
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        self.max_rows_per_load = max_rows_per_load
        self.retry_interval_s = retry_interval_s
        self.max_crashes = max_crashes
        self.on_change = on_change
        self.stats = ShipStats()
        self.last_error = ""
        self.down_until = 0.0
        self._crashes: dict[str, int] = {}
        # Rows shipped from a segment that failed once, or that an earlier shipper left, are
        # counted as replayed (as well as shipped).
        self._failed: set[str] = {p.name for p in self.pending()}
        self._recover_inflight()

    def pending(self) -> list[Path]:
        """Sealed segments and legacy Parquet spool files, oldest first."""
        files = [*self.spool_dir.glob(f"*{SEALED_SUFFIX}"), *self.spool_dir.glob("*.parquet")]
        return sorted(files, key=lambda p: p.name.split("-", 1)[-1] if p.name.startswith("seg-") else p.name)

    # -- crash-loop guard ----------------------------------------------------------------------
    def _recover_inflight(self) -> None:
        # A marker left behind means a shipper died while sending these segments. A kill is not
        # the segments' fault, so they are tried again (each on its own, to find the culprit), but
        # a segment that took the shipper down max_crashes times (a row crashing the Arrow or
        # BigQuery stack) goes to quarantine instead of crash-looping the writer forever.
        marker, book = self.spool_dir / _INFLIGHT, self.spool_dir / _CRASHES
        with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError, AttributeError):
            self._crashes = {str(k): int(v) for k, v in orjson.loads(book.read_bytes()).items()}
        try:
            names = [str(n) for n in orjson.loads(marker.read_bytes())]
        except (FileNotFoundError, orjson.JSONDecodeError, TypeError):
            names = []
        for name in names:
            self._crashes[name] = self._crashes.get(name, 0) + 1
            if self._crashes[name] >= self.max_crashes:
                path = self.spool_dir / name
                if path.exists():
                    self._quarantine_file(
                        path, f"the shipper died {self._crashes[name]} times while sending it"
                    )
                del self._crashes[name]
        marker.unlink(missing_ok=True)
        self._save_crashes()

    def _save_crashes(self) -> None:
        book = self.spool_dir / _CRASHES
        live = {k: v for k, v in self._crashes.items() if (self.spool_dir / k).exists()}
        self._crashes = live
        if live:
            book.write_bytes(orjson.dumps(live))
        else:
            book.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, path: Path) -> Segment | None:
        """Parse a segment; None when it was quarantined whole (or vanished)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if path.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq

                return Segment(path, pq.read_table(path).to_pylist(), [])
            except Exception as err:
                self._quarantine_file(path, f"unreadable Parquet spool file: {err}")
                return None
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the last record is complete
        rows: list[dict[str, Any]] = []
        rejected: list[tuple[bytes, str]] = []
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                rejected.append((line, f"line {no}: not JSON ({err})"))
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                rejected.append((line, f"line {no}: not a JSON object"))
        if tail:
            rejected.append((tail, f"line {len(lines) + 1}: truncated final record ({len(tail)} bytes)"))
        if not rows and rejected:
            reasons = "; ".join(reason for _, reason in rejected[:20])
            self._quarantine_file(path, f"no complete JSON record in the file: {reasons}")
            return None
        if rows and tail:
            self.stats.recovered_rows += len(rows)
            log.warning(
                "spool segment %s: torn final record cut off, %d rows recovered", path.name, len(rows)
            )
        return Segment(path, rows, rejected)

    # -- quarantine ----------------------------------------------------------------------------
    def _quarantine_file(self, path: Path, reason: str) -> None:
        dest = self.quarantine_dir / path.name
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            return
        dest.with_name(dest.name + ".reason").write_text(reason + "\n")
        self.stats.quarantined_files += 1
        log.error("quarantined spool file %s: %s", path.name, reason)
        self._changed()

    def _quarantine_rows(self, path: Path, rejected: list[tuple[bytes, str]]) -> None:
        # Written before the segment is shipped and deleted; a crash in between rewrites the
        # same file (same name), so a quarantined row is never counted twice on disk.
        if not rejected:
            return
        base = self.quarantine_dir / (path.name + ".rejected")
        base.write_bytes(b"".join(raw.rstrip(b"\n") + b"\n" for raw, _ in rejected))
        base.with_name(base.name + ".reason").write_text("".join(reason + "\n" for _, reason in rejected))
        self.stats.quarantined_rows += len(rejected)
        log.error("quarantined %d row(s) of spool segment %s: %s", len(rejected), path.name, rejected[0][1])

    def _split_unloadable(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
        """Rows the table's Arrow schema takes, and the indices of those it does not (bisection)."""
        spec = get_table_spec(self.table)

        def ok(chunk: list[dict[str, Any]]) -> bool:
            try:
                self.warehouse.to_arrow(spec, chunk)
                return True
            except Exception:
                return False

        bad: list[int] = []

        def walk(lo: int, hi: int) -> None:
            if ok(rows[lo:hi]):
                return
            if hi - lo == 1:
                bad.append(lo)
                return
            mid = (lo + hi) // 2
            walk(lo, mid)
            walk(mid, hi)

        if rows:
            walk(0, len(rows))
        drop = set(bad)
        return [r for i, r in enumerate(rows) if i not in drop], bad

    def _reason_unloadable(self, row: dict[str, Any]) -> str:
        spec = get_table_spec(self.table)
        try:
            self.warehouse.to_arrow(spec, [row])
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"[:300]
        else:
            return "refused with its batch"
        for name in row:  # name the column: the first whose removal lets the row through
            try:
                self.warehouse.to_arrow(spec, [{k: v for k, v in row.items() if k != name}])
            except Exception:
                continue
            return f"column {name!r}: {reason}"
        return reason

    # -- shipping ------------------------------------------------------------------------------
    def ship(self, force: bool = False) -> int:
        """Ship what is pending, oldest first; stop at the first failure. Returns rows shipped.

        Inside the retry back-off nothing is tried unless ``force``.
        """
        if not force and time.monotonic() < self.down_until:
            return 0
        shipped = 0
        files = self.pending()
        while files:
            group: list[Segment] = []
            n = 0
            while files and (not group or n < self.max_rows_per_load):
                suspect = files[0].name in self._crashes  # a suspect travels alone
                if group and suspect:
                    break
                seg = self._read(files.pop(0))
                if seg is None:
                    continue
                group.append(seg)
                n += len(seg.rows)
                if suspect:
                    break
            if not group:
                continue
            if not self._ship_group(group):
                break
            shipped += n
        return shipped

    def _ship_group(self, group: list[Segment]) -> bool:
        (self.spool_dir / _INFLIGHT).write_bytes(orjson.dumps([s.path.name for s in group]))
        try:
            import pyarrow as pa

            spec = get_table_spec(self.table)
            tables = []
            for seg in group:  # one conversion per segment: segments need not agree on types
                try:
                    tables.append(self.warehouse.to_arrow(spec, seg.rows))
                except Exception:
                    # One bad row must not hold the others back: find and quarantine just those.
                    good, bad = self._split_unloadable(seg.rows)
                    seg.rejected += [
                        (encode_row(seg.rows[i]), self._reason_unloadable(seg.rows[i])) for i in bad
                    ]
                    seg.rows = good
                    tables.append(self.warehouse.to_arrow(spec, good))
            for seg in group:
                self._quarantine_rows(seg.path, seg.rejected)
            data = pa.concat_tables(tables)
            try:
                if data.num_rows:
                    self.warehouse.upsert(self.table, data)
            except Exception as err:  # any error: the segments stay, in order, for the next try
                self.stats.retried += 1
                self.stats.failed_writes += 1
                self.last_error = f"{type(err).__name__}: {err}"[:500]
                self.down_until = time.monotonic() + self.retry_interval_s
                self._failed.update(s.path.name for s in group)
                level = logging.WARNING if isinstance(err, WarehouseUnavailable) else logging.ERROR
                log.log(
                    level, "shipping %d spooled rows to %s failed (%s); kept", data.num_rows, self.table, err
                )
                self._changed()
                return False
            for seg in group:
                seg.path.unlink(missing_ok=True)
                self.stats.shipped_rows += len(seg.rows)
                self.stats.shipped_files += 1
                if seg.path.name in self._failed:
                    self._failed.discard(seg.path.name)
                    self.stats.replayed_rows += len(seg.rows)
            if any(s.path.name in self._crashes for s in group):
                self._save_crashes()
            self.down_until = 0.0
            self._changed()
            return True
        finally:
            (self.spool_dir / _INFLIGHT).unlink(missing_ok=True)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
