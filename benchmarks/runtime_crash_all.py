"""All four replica processes killed with SIGKILL in the middle of a load, then restarted:
is every request a client saw acknowledged still executed, exactly once? (issue 5, "What must be
shown"; PBFT-RULES "Exactly once", N8, and durability of what `Ready.persist` holds.)

One round: a fresh 4-replica cluster on 127.0.0.1 (real processes, TLS, SQLite storage), closed-
loop clients each appending unique tokens to their own key of the key-value store; after a
random moment all four replicas get SIGKILL at once; they are restarted from their data
directories; then each key is read with an ordered request. The round passes if every
acknowledged token appears exactly once and no token appears twice (unacknowledged ones may
appear once: they may have committed just before the kill).

    python benchmarks/runtime_crash_all.py [--rounds 20] [--clients 8] [--dir DIR]

Prints one line per round, then one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbft.app import kv_append, kv_decode_result, kv_get
from pbft.runtime.client import connect
from pbft.runtime.cluster import LocalCluster, generate_cluster

#: Short timers so that a round takes seconds: checkpoints every 16 batches, quick retries.
FAST_BOUNDS = {
    "checkpoint_interval": 16,
    "log_window": 64,
    "request_timeout_ms": 1_000,
    "view_change_timeout_ms": 2_000,
    "client_retry_timeout_ms": 300,
    "state_transfer_timeout_ms": 500,
}


@dataclass
class RoundResult:
    acknowledged: int = 0
    #: Acknowledged tokens missing after the restart, and tokens executed more than once.
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    #: Tokens executed that no client saw acknowledged (allowed: they committed before the kill).
    executed_unacknowledged: int = 0
    load_s: float = 0.0
    recovery_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated and self.acknowledged > 0


async def crash_all_round(directory: Path, *, clients: int = 8, seed: int = 0,
                          load_s: float = 1.5) -> RoundResult:  # fmt: skip
    """One round in `directory` (created); raises on infrastructure failures (a replica that
    does not start, a read that gets no quorum)."""
    rng = random.Random(seed)
    files = generate_cluster(directory, clients=clients, bounds=FAST_BOUNDS)
    config = files.config
    signers = files.client_signers()
    result = RoundResult()
    acknowledged: dict[int, list[int]] = {c: [] for c in range(clients)}
    with LocalCluster(files) as cluster:
        cluster.start_all()
        await cluster.wait_all_ready()
        async with connect(config, signers, timeout_s=60, wait_connected_s=10) as client:

            async def load(c: int) -> None:
                for i in range(10**9):
                    await client.submit(kv_append(f"k{c}", f"{c}.{i};".encode()))
                    acknowledged[c].append(i)  # only once the result arrived

            async with trio.open_nursery() as nursery:
                for c in range(clients):
                    nursery.start_soon(load, c)
                result.load_s = load_s * rng.uniform(0.5, 1.5)
                await trio.sleep(result.load_s)
                for replica_id in range(config.n):  # all four, as close together as possible
                    cluster.processes[replica_id].send_signal(signal.SIGKILL)
                for replica_id in range(config.n):
                    cluster.kill(replica_id)
                nursery.cancel_scope.cancel()
        result.acknowledged = sum(len(v) for v in acknowledged.values())
        started = time.perf_counter()
        cluster.start_all()
        await cluster.wait_all_ready()
        async with connect(config, signers[0], timeout_s=60, wait_connected_s=10) as client:
            values = {}
            for c in range(clients):
                status, *rest = kv_decode_result(await client.submit(kv_get(f"k{c}")))
                assert status == "ok", rest
                values[c] = (rest[0] or b"").decode()
        result.recovery_s = time.perf_counter() - started
        cluster.stop_all()
    for c in range(clients):
        tokens = [t for t in values[c].split(";") if t]
        seen = set()
        for token in tokens:
            if token in seen:
                result.duplicated.append(token)
            seen.add(token)
        expected = {f"{c}.{i}" for i in acknowledged[c]}
        result.missing.extend(sorted(expected - seen))
        result.executed_unacknowledged += len(seen - expected)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    passed = 0
    acknowledged = 0
    failures = []
    started = time.perf_counter()
    for round_number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="pbft-crash-all-", dir=args.dir) as tmp:
            try:
                result = trio.run(functools.partial(
                    crash_all_round, Path(tmp) / "cluster", clients=args.clients,
                    seed=round_number,
                ))  # fmt: skip
            except Exception as e:  # noqa: BLE001 - an infrastructure failure fails the round
                failures.append(f"round {round_number}: {type(e).__name__}: {e}")
                print(f"round {round_number:2}: ERROR {type(e).__name__}: {e}", flush=True)
                continue
        acknowledged += result.acknowledged
        passed += result.ok
        if not result.ok:
            failures.append(f"round {round_number}: missing {result.missing[:5]}, "
                            f"duplicated {result.duplicated[:5]}")  # fmt: skip
        print(f"round {round_number:2}: {'ok  ' if result.ok else 'FAIL'} killed after "
              f"{result.load_s:.2f} s; {result.acknowledged} acknowledged, "
              f"{len(result.missing)} missing, {len(result.duplicated)} duplicated, "
              f"{result.executed_unacknowledged} executed unacknowledged; recovered and read "
              f"in {result.recovery_s:.1f} s", flush=True)  # fmt: skip
    print(json.dumps({
        "rounds": args.rounds,
        "rounds_passed": passed,
        "acknowledged_requests": acknowledged,
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
