"""Durable replica storage (issue 5, item 2): SQLite records written as the core hands them over
are read back in order; garbage below the stable checkpoint (C2) is collected without changing
what recovery rebuilds; a torn last write is discarded and damage elsewhere refuses start.
Record streams come from a simulated cluster, so they hold every kind the core persists."""

from __future__ import annotations

import logging
import sqlite3
import zlib

import pytest

from pbft.app import KeyValueStore, kv_append
from pbft.codec import Limits, encode
from pbft.core import Replica
from pbft.ed25519 import Ed25519Verifier
from pbft.messages import Checkpoint, PrePrepare, SnapshotRecord, VoteHorizon
from pbft.runtime.storage import (
    ReplicaStorage,
    StorageCorruptError,
    StorageError,
    StorageMismatchError,
)
from simulations.engine import Simulation

from .corekit import random_order_cluster

FAST = {
    "checkpoint_interval": 4,
    "log_window": 8,
    "request_timeout_ms": 500,
    "view_change_timeout_ms": 1_000,
    "client_retry_timeout_ms": 200,
    "state_transfer_timeout_ms": 300,
}


@pytest.fixture(scope="module")
def cluster() -> Simulation:
    """A cluster that ran long enough for several stable checkpoints; its storages keep every
    record (no compaction), the whole stream each replica persisted."""
    cluster = random_order_cluster(seed=11, config_overrides=FAST, compact_storage=False)
    sessions = [cluster.add_client(f"c{i}") for i in range(3)]
    cluster.run_workload(sessions, 15, lambda c, i: kv_append(f"k{c}", b"%d," % i))
    cluster.deliver_all()
    return cluster


def open_storage(path, replica_id=1, cluster=None) -> ReplicaStorage:
    key = cluster.signers[replica_id].public_key if cluster else None
    limits = Limits.from_config(cluster.config) if cluster else Limits()
    return ReplicaStorage(path, replica_id=replica_id, public_key=key, limits=limits)


def recover(cluster: Simulation, replica_id: int, records) -> Replica:
    return Replica.recover(
        cluster.config, replica_id, cluster.signers[replica_id], Ed25519Verifier(),
        KeyValueStore(), list(records), cluster.now_ms,
    )  # fmt: skip


def rows(path) -> list[tuple]:
    with sqlite3.connect(path / "replica.sqlite") as db:
        return db.execute("SELECT id, batch, kind FROM records ORDER BY id").fetchall()


def test_records_round_trip_in_order(tmp_path, cluster):
    records = cluster.storages[1].records
    kinds = {type(r).__name__ for r in records}
    assert {"PrePrepare", "Prepare", "Commit", "Checkpoint", "SnapshotRecord"} <= kinds
    with open_storage(tmp_path, cluster=cluster) as storage:
        for start in range(0, len(records), 7):  # several appends, as several Readys would
            storage.append(records[start : start + 7])
        assert storage.load() == records
        stats = storage.statistics()
        assert stats.records == len(records) and stats.records_appended == len(records)
        assert stats.appends == -(-len(records) // 7)
    with open_storage(tmp_path, cluster=cluster) as reopened:
        assert reopened.load() == records


def test_an_empty_storage_loads_nothing_and_an_empty_append_writes_nothing(tmp_path):
    with open_storage(tmp_path) as storage:
        storage.append([])
        assert storage.load() == [] and storage.statistics().appends == 0


def test_garbage_collection_keeps_what_recovery_needs(tmp_path, cluster):
    """C2: records at or below the stable checkpoint are deleted (and all vote horizons but the
    latest), but the replica recovered from what is left equals the one recovered from
    everything."""
    records = cluster.storages[2].records
    stable = cluster.replicas[2].stable_checkpoint
    assert stable >= 8, "the workload must reach a few checkpoints"
    with open_storage(tmp_path, 2, cluster) as storage:
        storage.append(records)
        collected = storage.collect_garbage(stable)
        assert collected > 0 and storage.collect_garbage(stable) == 0
        kept = storage.load()
    assert len(kept) == len(records) - collected
    snapshots = [r.sequence for r in kept if isinstance(r, SnapshotRecord)]
    assert snapshots and min(snapshots) == stable, "the latest snapshot at h is kept"
    assert all(r.sequence > stable for r in kept if isinstance(r, PrePrepare))
    proof = [r for r in kept if isinstance(r, Checkpoint) and r.sequence == stable]
    assert len(proof) >= cluster.config.quorum, "the checkpoint proof at h is kept"
    horizons = [r for r in records if isinstance(r, VoteHorizon)]
    assert len(horizons) > 1 and [r for r in kept if isinstance(r, VoteHorizon)] == horizons[-1:]
    full, pruned = recover(cluster, 2, records), recover(cluster, 2, kept)
    assert pruned.status() == full.status()
    # Both restart from the snapshot at h (the live replica may have executed beyond it): the
    # state the checkpoint proof vouches for.
    assert pruned.last_executed == full.last_executed == stable
    assert pruned.state_digest() == full.state_digest() == proof[0].digest


def test_garbage_is_collected_in_the_append_that_reports_the_watermark(tmp_path, cluster):
    records = cluster.storages[0].records
    with open_storage(tmp_path, 0, cluster) as storage:
        storage.append(records, low_watermark=cluster.replicas[0].stable_checkpoint)
        stats = storage.statistics()
        assert stats.garbage_collections == 1 and stats.records_collected > 0
        assert stats.records == len(storage.load())


def test_nothing_is_collected_without_a_snapshot_at_or_below_the_watermark(tmp_path, cluster):
    """While a replica fetches the state of a checkpoint it has no snapshot for (S1), the
    records it would restart from must stay."""
    records = [r for r in cluster.storages[1].records if not isinstance(r, SnapshotRecord)]
    with open_storage(tmp_path, 1, cluster) as storage:
        storage.append(records)
        assert storage.collect_garbage(cluster.replicas[1].stable_checkpoint) == 0


def test_a_torn_last_record_is_discarded_with_a_log_line(tmp_path, cluster, caplog):
    records = cluster.storages[1].records[:30]
    with open_storage(tmp_path, cluster=cluster) as storage:
        storage.append(records[:20])
        storage.append(records[20:])
    # Truncate the last row's body, as a write torn by a crash would leave it.
    with sqlite3.connect(tmp_path / "replica.sqlite") as db:
        db.execute("UPDATE records SET body = substr(body, 1, 5) WHERE id = (SELECT max(id) FROM records)")
    caplog.set_level(logging.WARNING, logger="pbft.runtime.storage")
    with open_storage(tmp_path, cluster=cluster) as storage:
        assert storage.load() == records[:-1]
        assert storage.statistics().torn_records_discarded == 1
    [line] = [r for r in caplog.records if getattr(r, "reason", None) == "torn_tail"]
    assert "torn" in line.getMessage() and line.levelno == logging.WARNING
    # The damaged row is gone: the next start is clean and appends go on after it.
    with open_storage(tmp_path, cluster=cluster) as storage:
        storage.append(records[-1:])
        assert storage.load() == records


def test_a_damaged_record_inside_the_last_append_drops_the_rest_of_that_append(tmp_path, cluster):
    records = cluster.storages[1].records[:30]
    with open_storage(tmp_path, cluster=cluster) as storage:
        storage.append(records[:20])
        storage.append(records[20:])
    with sqlite3.connect(tmp_path / "replica.sqlite") as db:
        db.execute("UPDATE records SET checksum = checksum + 1 WHERE id = 25")
    with open_storage(tmp_path, cluster=cluster) as storage:
        assert storage.load() == records[:24]


def test_corruption_in_the_middle_refuses_to_start(tmp_path, cluster):
    records = cluster.storages[1].records[:30]
    with open_storage(tmp_path, cluster=cluster) as storage:
        storage.append(records[:10])
        storage.append(records[10:20])
        storage.append(records[20:])
    with sqlite3.connect(tmp_path / "replica.sqlite") as db:
        # Flip one byte in the middle of record 15's body; its checksum no longer matches.
        body = db.execute("SELECT body FROM records WHERE id = 15").fetchone()[0]
        flipped = body[:10] + bytes([body[10] ^ 0xFF]) + body[11:]
        db.execute("UPDATE records SET body = ? WHERE id = 15", (flipped,))
    with (
        open_storage(tmp_path, cluster=cluster) as storage,
        pytest.raises(StorageCorruptError, match=r"record 15 .*checksum mismatch.*refuses"),
    ):
        storage.load()
    assert len(rows(tmp_path)) == 30, "nothing is deleted when start is refused"


def test_a_record_that_does_not_decode_in_the_middle_refuses_to_start(tmp_path, cluster):
    records = cluster.storages[1].records[:30]
    with open_storage(tmp_path, cluster=cluster) as storage:
        storage.append(records[:15])
        storage.append(records[15:])
    garbage = b"\x93\x01\x02"  # a valid msgpack array that is no message, with a valid CRC
    with sqlite3.connect(tmp_path / "replica.sqlite") as db:
        db.execute("UPDATE records SET body = ?, checksum = ? WHERE id = 3",
                   (garbage, zlib.crc32(garbage)))  # fmt: skip
    with (
        open_storage(tmp_path, cluster=cluster) as storage,
        pytest.raises(StorageCorruptError, match="does not decode"),
    ):
        storage.load()


def test_a_file_that_is_not_a_database_refuses_to_start(tmp_path):
    (tmp_path / "replica.sqlite").write_bytes(b"this is not a SQLite database" * 100)
    with pytest.raises(StorageCorruptError, match="refusing to start"):
        open_storage(tmp_path)


def test_a_data_directory_of_another_replica_is_refused(tmp_path, cluster):
    with open_storage(tmp_path, 1, cluster):
        pass
    with pytest.raises(StorageMismatchError, match="another replica"):
        open_storage(tmp_path, 2, cluster)


def test_large_snapshots_are_stored_beyond_the_network_frame_bound(tmp_path):
    limits = Limits(frame_bytes_max=64 * 1024, snapshot_bytes_max=4 * 1024 * 1024)
    big = SnapshotRecord(64, b"s" * (1024 * 1024))
    assert len(encode(big)) > limits.frame_bytes_max
    with ReplicaStorage(tmp_path, limits=limits) as storage:
        storage.append([big])
        assert storage.load() == [big]


def test_only_known_synchronous_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError):
        ReplicaStorage(tmp_path, synchronous="OFF")
    assert issubclass(StorageCorruptError, StorageError)


def test_a_second_storage_on_the_same_directory_is_refused_naming_the_owner(tmp_path):
    """Issue 13, item 9: two processes signing as one replica could vote twice for one
    sequence number; the data directory is locked while its storage is open."""
    import os

    from pbft.runtime.storage import ReplicaStorage, StorageLockedError

    first = ReplicaStorage(tmp_path / "r0", replica_id=0, public_key=b"k" * 32)
    with pytest.raises(StorageLockedError, match=f"pid {os.getpid()}"):
        ReplicaStorage(tmp_path / "r0", replica_id=0, public_key=b"k" * 32)
    first.close()
    ReplicaStorage(tmp_path / "r0", replica_id=0, public_key=b"k" * 32).close()
