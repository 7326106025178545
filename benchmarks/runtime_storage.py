"""Append latency of the durable replica storage (SQLite, WAL, synchronous=FULL).

Replays the record stream a replica of a simulated cluster persisted, grouped as its `Ready`s
would be (`--records-per-append`), into a fresh database, and reports appends/s, records/s and
the cost of the commit (the fsync) against the rest (encoding, inserting). Also times a raw
`os.write` + `os.fsync` of the same bytes, the floor any durable store pays, and the same
appends with synchronous=NORMAL (not durable on power loss; for comparison only).

    python benchmarks/runtime_storage.py [--appends N] [--records-per-append K] [--dir DIR]

Prints a table, then one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbft.app import kv_put
from pbft.codec import Limits, encode
from pbft.runtime.storage import ReplicaStorage
from simulations.engine import random_order_cluster


def record_stream(count: int) -> tuple[list, Limits]:
    """At least `count` records a backup persisted under a closed-loop workload."""
    cluster = random_order_cluster(seed=1, compact_storage=False,
                                   config_overrides={"batch_size_max": 10})
    sessions = [cluster.add_client(f"c{i}") for i in range(20)]
    per_client = 10
    while True:
        cluster.run_workload(sessions, per_client, lambda c, i: kv_put(f"k{c}", b"v" * 16))
        records = cluster.storages[1].records
        if len(records) >= count:
            return records[:count], Limits.from_config(cluster.config)


def run(directory: Path, records: list, group: int, limits: Limits, synchronous: str) -> dict:
    with ReplicaStorage(directory, limits=limits, synchronous=synchronous) as storage:
        latencies = []
        started = time.perf_counter()
        for start in range(0, len(records), group):
            t = time.perf_counter()
            storage.append(records[start : start + group])
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
        stats = storage.statistics()
        assert len(storage.load()) == len(records)
    latencies.sort()
    return {
        "synchronous": synchronous,
        "appends_per_s": len(latencies) / elapsed,
        "records_per_s": len(records) / elapsed,
        "append_us_p50": latencies[len(latencies) // 2] * 1e6,
        "append_us_p99": latencies[int(len(latencies) * 0.99)] * 1e6,
        "commit_us_mean": stats.commit_seconds / stats.appends * 1e6,
        "other_us_mean": (stats.append_seconds - stats.commit_seconds) / stats.appends * 1e6,
    }


def raw_fsync(directory: Path, records: list, group: int) -> dict:
    bodies = [encode(r) for r in records]
    path = directory / "raw.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    latencies = []
    try:
        for start in range(0, len(bodies), group):
            t = time.perf_counter()
            os.write(fd, b"".join(bodies[start : start + group]))
            os.fsync(fd)
            latencies.append(time.perf_counter() - t)
    finally:
        os.close(fd)
    return {"fsync_us_p50": statistics.median(latencies) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--records-per-append", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: /tmp)")
    args = parser.parse_args()
    group = args.records_per_append
    records, limits = record_stream(args.appends * group)
    size = sum(len(encode(r)) for r in records) / len(records)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for synchronous in ("FULL", "NORMAL"):
            rows.append(run(Path(tmp) / synchronous, records, group, limits, synchronous))
        floor = raw_fsync(Path(tmp), records, group)
    print(f"{len(records)} records ({size:.0f} bytes on average), {group} per append\n")
    print(f"{'synchronous':<12}{'appends/s':>11}{'records/s':>11}{'p50 µs':>9}{'p99 µs':>9}"
          f"{'commit µs':>11}{'other µs':>10}")  # fmt: skip
    for row in rows:
        print(f"{row['synchronous']:<12}{row['appends_per_s']:>11,.0f}{row['records_per_s']:>11,.0f}"
              f"{row['append_us_p50']:>9.0f}{row['append_us_p99']:>9.0f}"
              f"{row['commit_us_mean']:>11.0f}{row['other_us_mean']:>10.0f}")  # fmt: skip
    print(f"\nraw write + fsync of the same bytes: {floor['fsync_us_p50']:.0f} µs per append (p50)")
    full = rows[0]
    print(json.dumps({
        "records_per_append": group,
        "record_bytes_mean": round(size),
        "durable_appends_per_s": round(full["appends_per_s"]),
        "durable_records_per_s": round(full["records_per_s"]),
        "durable_append_us_p50": round(full["append_us_p50"]),
        "durable_append_us_p99": round(full["append_us_p99"]),
        "commit_us_mean": round(full["commit_us_mean"]),
        "raw_fsync_us_p50": round(floor["fsync_us_p50"]),
        "normal_append_us_p50": round(rows[1]["append_us_p50"]),
    }))


if __name__ == "__main__":
    main()
