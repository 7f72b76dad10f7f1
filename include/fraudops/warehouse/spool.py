"""The prediction log's counts (``SpoolStats``), as ``/metrics`` and ``/version`` report them.

The durable spool itself is ``fraudops.warehouse.journal`` (append before acknowledging, ship
from a supervised process, keyed MERGE, quarantine); ``fraudops.serving.predlog`` runs it for the
scoring service and fills these counts. (This module used to hold ``SpoolingWriter``, an
in-memory micro-batcher that lost its buffer on a SIGKILL; the journal replaced it in round 2 and
still ships the Parquet files it left behind.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SpoolStats:
    #: Rows handed to the writer.
    accepted: int = 0
    #: Rows the warehouse accepted (a keyed MERGE: a re-sent row counts, but is not inserted twice).
    written: int = 0
    #: Rows written to spool files (the durable prediction log spools every row before shipping).
    spooled_rows: int = 0
    spooled_files: int = 0
    #: Rows written after a failed attempt, or left on disk by an earlier process.
    replayed_rows: int = 0
    replayed_files: int = 0
    failed_writes: int = 0
    #: Failed shipping attempts whose rows stayed in the spool for the next one.
    retried: int = 0
    #: Rows read back from a segment whose final record was torn (the torn bytes are quarantined).
    recovered_rows: int = 0
    #: Rows / whole files moved to the quarantine folder (unreadable, or refused by the schema).
    quarantined_rows: int = 0
    quarantined_files: int = 0
    #: Times the supervisor restarted a dead writer.
    writer_restarts: int = 0
    #: Failed spool writes (disk full); such rows wait in memory (``buffered``) and are retried.
    spool_errors: int = 0
    #: Rows dropped because even that memory backlog was full.
    lost_rows: int = 0
    pending_files: int = 0
    buffered: int = 0
    last_error: str = ""
