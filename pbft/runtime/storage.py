"""Durable storage of one replica: an append-only table of encoded records in SQLite (WAL mode).

What is stored is exactly what the core hands over in `Ready.persist`, in order, each record as
`pbft.codec.encode` bytes with a CRC-32 of those bytes. `append` writes one `Ready`'s records in
one transaction and returns only once the commit is durable (`synchronous=FULL`: SQLite fsyncs
the write-ahead log before `COMMIT` returns), so the driver may then send the messages that
depend on them. `load` returns every record, in order, for `Replica.recover`.

Damage. SQLite's own WAL checksums already drop a transaction whose commit never completed; the
per-row CRC (and decoding every row) catches what SQLite cannot see: bytes changed after the
commit. A damaged *tail* — bad rows that all belong to the last append, from the first bad row
to the end — is what a torn last write looks like: those rows are discarded (and deleted, with
a logged warning), because the append they belonged to never returned, so nothing that depends
on them was sent. A damaged row followed by rows of a later append cannot be a torn write: the
replica's memory of what it voted may be wrong, so `load` raises `StorageCorruptError` and the
replica refuses to start rather than risk voting twice (PBFT-RULES N10, V1).

Garbage collection (C2). Once the core reports a stable checkpoint h (`Ready.status.
low_watermark`), records at or below it are dead weight: recovery restores the snapshot at h and
replays what follows. `collect_garbage(h)` deletes them, keeping the latest own `SnapshotRecord`
at or below h (the horizon g; nothing is collected while the replica holds no snapshot at or
below h, e.g. while it fetches h's state), the CHECKPOINTs at and above g (the proof),
everything above g, and the latest VIEW-CHANGE, NEW-VIEW and VoteHorizon (recovery needs only
those).

One process per replica: the storage holds an exclusive lock on its directory
(`replica.lock`, which names the owner's process id) while it is open, so a second process (or a
second storage object) on the same data directory refuses to start (`StorageLockedError`)
instead of running, and voting, beside the first.

Ownership and threads: a `ReplicaStorage` owns one SQLite connection. It may be used from any
one thread at a time (the node calls it from its event loop, or through `trio.to_thread.run_sync`
with `NodeSettings.persist_in_thread`, one call at a time).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pbft import codec
from pbft.messages import (
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    SnapshotRecord,
    ViewChange,
    VoteHorizon,
)

__all__ = [
    "FORMAT_VERSION",
    "ReplicaStorage",
    "StorageCorruptError",
    "StorageError",
    "StorageMismatchError",
    "StorageStatistics",
    "storage_limits",
]

log = logging.getLogger("pbft.runtime.storage")

#: Stored in the `meta` table; a file of another format is refused, never guessed at.
FORMAT_VERSION = 1
DATABASE_NAME = "replica.sqlite"

_TAG_PRE_PREPARE = codec.TAGS[PrePrepare]
_TAG_PREPARE = codec.TAGS[Prepare]
_TAG_COMMIT = codec.TAGS[Commit]
_TAG_PREPARED_CERTIFICATE = codec.TAGS[PreparedCertificate]
_TAG_CHECKPOINT = codec.TAGS[Checkpoint]
_TAG_SNAPSHOT = codec.TAGS[SnapshotRecord]
_TAG_VIEW_CHANGE = codec.TAGS[ViewChange]
_TAG_NEW_VIEW = codec.TAGS[NewView]
_TAG_VOTE_HORIZON = codec.TAGS[VoteHorizon]
_TAG_NAMES = {tag: cls.__name__ for cls, tag in codec.TAGS.items()}

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    # id is the append order; batch numbers the appends (one transaction each); sequence is
    # the sequence number a record belongs to (NULL for view-change records), for collection.
    """CREATE TABLE IF NOT EXISTS records (
        id INTEGER PRIMARY KEY,
        batch INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        sequence INTEGER,
        body BLOB NOT NULL,
        checksum INTEGER NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS records_by_kind_sequence ON records (kind, sequence)""",
)
_INSERT = "INSERT INTO records (batch, kind, sequence, body, checksum) VALUES (?, ?, ?, ?, ?)"


class StorageError(Exception):
    """The replica's storage cannot be used; the message says which file and why."""


class StorageCorruptError(StorageError):
    """Records other than a torn tail are damaged: the replica must not start on them."""


class StorageMismatchError(StorageError):
    """The data directory belongs to another replica or another storage format."""


class StorageLockedError(StorageError):
    """Another process (or another open storage) uses the data directory: two processes
    signing as one replica could vote twice for one sequence number."""


#: The lock file in a data directory: an exclusive `flock` held while the storage is open,
#: holding the owner's process id (for the message a second process gets).
LOCK_NAME = "replica.lock"


def _lock_directory(directory: Path) -> int:
    """Take the directory's exclusive lock; raises StorageLockedError naming the process that
    holds it. The lock goes with the file descriptor (closed, or the process dies)."""
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StorageLockedError(
            f"{directory} is in use by another replica process (pid {owner}); two processes "
            "must never run as one replica: stop the other one first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@dataclass(frozen=True, slots=True)
class StorageStatistics:
    """Counters since the storage was opened (and `records`, the rows stored now)."""

    records: int
    appends: int
    records_appended: int
    bytes_appended: int
    #: Wall time spent in `append`, commit (fsync) included, and in COMMITs alone (those of
    #: appends and of stand-alone `collect_garbage` calls).
    append_seconds: float
    commit_seconds: float
    garbage_collections: int
    records_collected: int
    #: Rows of a torn tail discarded by `load`.
    torn_records_discarded: int
    #: The sequence up to which records were last collected (0: never).
    collected_through: int


def storage_limits(limits: codec.Limits) -> codec.Limits:
    """The decoding bounds for stored records: a network frame is capped at `frame_bytes_max`,
    but a `SnapshotRecord` holds a whole snapshot (up to `snapshot_bytes_max`)."""
    frame = max(limits.frame_bytes_max, limits.snapshot_bytes_max + 64 * 1024)
    return codec.Limits(
        frame_bytes_max=frame,
        operation_bytes_max=limits.operation_bytes_max,
        result_bytes_max=limits.result_bytes_max,
        batch_size_max=limits.batch_size_max,
        certificate_entries_max=limits.certificate_entries_max,
        state_chunk_bytes_max=limits.state_chunk_bytes_max,
        state_proof_entries_max=limits.state_proof_entries_max,
        snapshot_bytes_max=limits.snapshot_bytes_max,
    )


def _sequence_of(message: Message) -> int | None:
    if isinstance(message, PreparedCertificate):
        return message.pre_prepare.sequence
    if isinstance(message, (ViewChange, NewView)):
        return None
    return getattr(message, "sequence", None)


class ReplicaStorage:
    """The durable record log of one replica, in `directory/replica.sqlite`.

    `ReplicaStorage(directory, replica_id=..., public_key=...)` creates the directory and the
    database if needed. The first open stamps the replica's id and public key into the file; a
    later open with another id or key raises `StorageMismatchError` (a data directory given to
    the wrong replica would make it vote with another's memory). A file that is not a SQLite
    database, or one SQLite reports damaged, raises `StorageCorruptError`. `synchronous` is
    SQLite's: "FULL" (the default) makes every append durable; "NORMAL" (for benchmarks only)
    may lose the last appends on power failure.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        replica_id: int | None = None,
        public_key: bytes | None = None,
        limits: codec.Limits = codec.DEFAULT_LIMITS,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.directory = Path(directory)
        self.path = self.directory / DATABASE_NAME
        self._limits = storage_limits(limits)
        created = not self.path.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = _lock_directory(self.directory)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per append.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            self._unlock()
            raise StorageError(f"{self.path}: cannot open: {e}") from e
        try:
            self._configure(synchronous)
            self._check_identity(replica_id, public_key)
            self._batch = self._scalar("SELECT coalesce(max(batch), 0) FROM records")
            self._records = self._scalar("SELECT count(*) FROM records")
            self._snapshot_sequences = {
                row[0]
                for row in self._db.execute(
                    "SELECT sequence FROM records WHERE kind = ?", (_TAG_SNAPSHOT,)
                )
            }
        except sqlite3.DatabaseError as e:
            self._db.close()
            self._unlock()
            raise StorageCorruptError(
                f"{self.path}: SQLite reports the database unusable: {e}; refusing to start"
            ) from e
        except BaseException:
            self._db.close()
            self._unlock()
            raise
        if created:
            _fsync_directory(self.directory)
        self._appends = 0
        self._records_appended = 0
        self._bytes_appended = 0
        self._append_seconds = 0.0
        self._commit_seconds = 0.0
        self._garbage_collections = 0
        self._records_collected = 0
        self._torn_discarded = 0
        self._collected_through = 0

    # ------------------------------------------------------------------ set-up

    def _configure(self, synchronous: str) -> None:
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # A WAL of about 1 MiB, checkpointed and then overwritten in place: an fsync over
        # allocated blocks needs no file-system journal commit (about 0.2 ms here, against
        # milliseconds for one that grows the file). Much smaller WALs checkpoint (and fsync
        # the database file) too often.
        self._db.execute("PRAGMA wal_autocheckpoint=256")
        self._db.execute("PRAGMA journal_size_limit=4194304")
        self._db.execute("PRAGMA foreign_keys=OFF")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def _check_identity(self, replica_id: int | None, public_key: bytes | None) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        expected = {"format": str(FORMAT_VERSION)}
        if replica_id is not None:
            expected["replica"] = str(replica_id)
        if public_key is not None:
            expected["public_key"] = public_key.hex()
        for key, value in expected.items():
            stored = meta.get(key)
            if stored is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
            elif stored != value:
                raise StorageMismatchError(
                    f"{self.path}: stored {key} is {stored}, this replica's is {value}: "
                    "the data directory belongs to another replica (or storage format)"
                )

    def _scalar(self, query: str, parameters: tuple = ()) -> int:
        return int(self._db.execute(query, parameters).fetchone()[0])

    # ------------------------------------------------------------------ writing

    def append(self, records: Sequence[Message], *, low_watermark: int = 0) -> None:
        """Make `records` durable, in order, as one transaction; return once committed.

        With `low_watermark` above what was last collected, garbage below it is collected in
        the same transaction (see `collect_garbage`). Raises ValueError for a record the codec
        cannot encode (a caller bug) and StorageError if SQLite fails (disk full, I/O error);
        after a StorageError nothing of this call is stored and the replica should stop.
        """
        started = time.perf_counter()
        rows = []
        batch = self._batch + 1
        size = 0
        snapshots = []
        for record in records:
            body = codec.encode(record)
            kind = codec.TAGS[type(record)]
            sequence = _sequence_of(record)
            if kind == _TAG_SNAPSHOT:
                snapshots.append(sequence)
            rows.append((batch, kind, sequence, body, zlib.crc32(body)))
            size += len(body)
        collect = self._collection_horizon(low_watermark, snapshots)
        if not rows and collect is None:
            return
        with self._transaction(f"append of {len(rows)} records") as db:
            if rows:
                db.executemany(_INSERT, rows)
            collected = self._delete_garbage(collect) if collect is not None else 0
        finished = time.perf_counter()
        if rows:
            self._batch = batch
            self._snapshot_sequences.update(snapshots)
        self._records += len(rows) - collected
        self._appends += 1
        self._records_appended += len(rows)
        self._bytes_appended += size
        self._append_seconds += finished - started
        if collect is not None:
            self._note_collected(collect, collected)

    def collect_garbage(self, low_watermark: int) -> int:
        """C2: delete the records made useless by the stable checkpoint `low_watermark` (see the
        module docstring); returns how many rows were deleted. Idempotent."""
        horizon = self._collection_horizon(low_watermark, [])
        if horizon is None:
            return 0
        with self._transaction("garbage collection"):
            collected = self._delete_garbage(horizon)
        self._records -= collected
        self._note_collected(horizon, collected)
        return collected

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (durably, at `synchronous=FULL`) when the block
        ends, rolled back if it raises; an SQLite failure becomes a StorageError naming `what`.
        The COMMIT's own time is added to the statistics' commit_seconds."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                committing = time.perf_counter()
                db.execute("COMMIT")
                self._commit_seconds += time.perf_counter() - committing
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StorageError(f"{self.path}: {what} failed: {e}") from e

    def _collection_horizon(self, low_watermark: int, new_snapshots: list[int | None]) -> int | None:
        """g: the latest snapshot at or below the stable checkpoint, if it moves collection on."""
        if low_watermark <= self._collected_through:
            return None
        candidates = [
            s for s in (*self._snapshot_sequences, *new_snapshots)
            if s is not None and s <= low_watermark
        ]  # fmt: skip
        if not candidates:
            return None
        horizon = max(candidates)
        return horizon if horizon > self._collected_through else None

    def _delete_garbage(self, horizon: int) -> int:
        db = self._db
        deleted = 0
        for kinds, operator in (
            ((_TAG_PRE_PREPARE, _TAG_PREPARE, _TAG_COMMIT, _TAG_PREPARED_CERTIFICATE), "<="),
            ((_TAG_CHECKPOINT, _TAG_SNAPSHOT), "<"),
        ):
            for kind in kinds:
                deleted += db.execute(
                    f"DELETE FROM records WHERE kind = ? AND sequence {operator} ?",
                    (kind, horizon),
                ).rowcount
        for kind in (_TAG_VIEW_CHANGE, _TAG_NEW_VIEW, _TAG_VOTE_HORIZON):
            deleted += db.execute(
                "DELETE FROM records WHERE kind = ? AND id < "
                "(SELECT max(id) FROM records WHERE kind = ?)",
                (kind, kind),
            ).rowcount
        return deleted

    def _note_collected(self, horizon: int, collected: int) -> None:
        self._collected_through = horizon
        self._snapshot_sequences = {s for s in self._snapshot_sequences if s >= horizon}
        self._garbage_collections += 1
        self._records_collected += collected
        log.debug(
            "collected %d records through sequence %d",
            collected,
            horizon,
            extra={"path": str(self.path), "collected": collected, "horizon": horizon},
        )

    # ------------------------------------------------------------------ reading

    def load(self) -> list[Message]:
        """Every stored record, in append order, for `Replica.recover`.

        A damaged tail (see the module docstring) is deleted and logged; any other damaged
        record raises `StorageCorruptError` naming the row, its kind and what is wrong.
        """
        try:
            rows = self._db.execute(
                "SELECT id, batch, kind, body, checksum FROM records ORDER BY id"
            ).fetchall()
        except sqlite3.DatabaseError as e:
            raise StorageCorruptError(
                f"{self.path}: SQLite cannot read the records: {e}; refusing to start"
            ) from e
        records: list[Message] = []
        decode, limits, tags = codec.decode, self._limits, codec.TAGS
        for index, (row_id, batch, kind, body, checksum) in enumerate(rows):
            problem = None
            if not isinstance(body, bytes):
                problem = f"body is {type(body).__name__}, not bytes"
            elif zlib.crc32(body) != checksum:
                problem = f"checksum mismatch (stored {checksum}, computed {zlib.crc32(body)})"
            else:
                try:
                    message = decode(body, limits)
                except codec.DecodeError as e:
                    problem = f"does not decode: {e}"
                else:
                    if tags[type(message)] != kind:
                        problem = f"decodes as {type(message).__name__}, stored as kind {kind}"
            if problem is None:
                records.append(message)
                continue
            self._damaged(rows, index, problem)
            break
        return records

    def _damaged(self, rows: list, index: int, problem: str) -> None:
        """Row `index` is bad: discard the tail if it is a torn last append, else raise."""
        row_id, batch, kind = rows[index][0], rows[index][1], rows[index][2]
        what = f"record {row_id} ({_TAG_NAMES.get(kind, f'kind {kind}')}, append {batch})"
        last_batch = rows[-1][1]
        if batch != last_batch:
            later = sum(1 for row in rows[index + 1 :] if row[1] != batch)
            raise StorageCorruptError(
                f"{self.path}: {what} is damaged: {problem}. {later} records of later appends "
                "follow it, so this is not a torn last write: the replica's record of its own "
                "votes cannot be trusted and it refuses to start. Restore the data directory "
                "from a backup, or move it aside so that the replica rejoins empty and catches "
                "up by state transfer."
            )
        discarded = len(rows) - index
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM records WHERE id >= ?", (row_id,))
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            raise StorageError(f"{self.path}: cannot discard the torn tail: {e}") from e
        self._records -= discarded
        self._torn_discarded += discarded
        log.warning(
            "discarded a torn last write: %s is damaged (%s); dropped it and the %d records "
            "after it in the same append",
            what,
            problem,
            discarded - 1,
            extra={
                "path": str(self.path),
                "reason": "torn_tail",
                "record": row_id,
                "discarded": discarded,
            },
        )

    # ------------------------------------------------------------------ the rest

    def statistics(self) -> StorageStatistics:
        return StorageStatistics(
            records=self._records,
            appends=self._appends,
            records_appended=self._records_appended,
            bytes_appended=self._bytes_appended,
            append_seconds=self._append_seconds,
            commit_seconds=self._commit_seconds,
            garbage_collections=self._garbage_collections,
            records_collected=self._records_collected,
            torn_records_discarded=self._torn_discarded,
            collected_through=self._collected_through,
        )

    def close(self) -> None:
        """Close the database and release the directory (idempotent). What was appended is
        already durable."""
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # (releases the flock)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (Linux needs the directory fsynced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
