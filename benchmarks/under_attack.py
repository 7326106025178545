"""Availability under attack (issue 11): what correct clients get from the cluster fault-free and
under each attack of the issue, in the deterministic simulator.

The workload of every run: the real `pbft.core` replicas and client sessions, links of 5-15 ms
one way (replicas in different data centres of one region), the cluster configuration as
shipped (`ClusterConfig`'s defaults, restored over the simulator's test settings
`simulations.engine.SIMULATION_CONFIG`), and `--clients` correct closed-loop clients, each
putting a small value to a key of its own with `--think-ms` between a result and its next
request, for `--virtual-s` seconds. The attacks (`simulations.attacks`, and the behaviours of
`simulations.byzantine` for items 4, 5 and 7) start at once and last the whole run:

- large_requests (item 1): 8 more correct clients send 3 requests of operation_bytes_max each,
  all at once;
- censoring_primary (item 2): the primary never proposes client 0's requests;
- duplicate_batch (item 3): the primary proposes one batch at the first checkpoint n and at
  n + 1 (n + 1 first), then falls silent;
- slow_state_source, fetch_state_flood (items 4, 7): backup 2 is cut off from 1 s to 6 s and
  must fetch the state; backup 3 serves it as slowly as it dares, or floods everyone with
  FETCH-STATE and FETCH-LOG requests;
- client_key_flood (item 5): a client signs each of 200 requests a second with a fresh key,
  while a backup replays the correct clients' first requests;
- stash_flood (item 6): the next view's primary sends 40 signed PRE-PREPAREs of 3 MiB for the
  next and a far view, and votes above the high watermark;
- late_checkpoints (item 8): CHECKPOINTs to two backups arrive 150-300 ms late (with the
  shipped checkpoint interval);
- slow_primary_accomplice (item 9): the primary holds each PRE-PREPARE 50 ms short of the
  request timeout and a backup never sends COMMITs. Two faulty replicas need f = 2: this row
  runs with n = 7, and its ratio is to the fault-free run with n = 7.

Columns: completed requests of the `--clients` correct clients per virtual second (the extra
correct clients of large_requests are not counted there, so every row measures the same load),
its ratio to the fault-free run with the same n, the longest wait of any correct client's
request (invocation to result, or to the end of the run if it never completed; the large
requests included), the number of view changes (the highest view a correct replica reached),
and the largest `Replica.bytes_held()` of a correct replica (sampled every 100 ms of virtual
time). Nothing here is tuned to the attacks: each row is one seeded run of the same workload.

With `--slow-primary-sweep`, a second table: a primary (otherwise correct, no accomplice, n = 4)
that holds each PRE-PREPARE for a given delay, from under the proposal delay the backups
tolerate (three of their measured commit rounds, at least propose_timeout_ms / 5, V1'') to far
above it: how slow a primary may be before it is replaced, and what that costs, measured.

    python benchmarks/under_attack.py [--virtual-s 60] [--clients 8] [--think-ms 20]
                                      [--seed 1] [--quick] [--slow-primary-sweep]

Prints the table, then one JSON object as its last line: `min_throughput_ratio`,
`max_request_wait_ms`, `peak_replica_bytes` (over the attacks), one `ratio_<attack>` per attack,
`slow_primary_ratio_by_delay_ms` with the sweep, and each run's figures under `runs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable

from pbft.app import kv_put
from pbft.config import ClusterConfig
from pbft.messages import Checkpoint
from simulations import byzantine, checkers
from simulations.attacks import (
    CensoringPrimary,
    DuplicateBatchPrimary,
    LargeRequestClients,
    SlowPrimary,
    StashFlooder,
    WithholdCommits,
)
from simulations.byzantine import add_byzantine_client
from simulations.engine import SIMULATION_CONFIG, Simulation
from simulations.network import NetworkProfile

#: The shipped values of everything the simulator changes for its tests.
SHIPPED_CONFIG = {f.name: f.default for f in dataclasses.fields(ClusterConfig)
                  if f.name in SIMULATION_CONFIG}
#: One-way link latency, uniform in this range (ms).
LATENCY_MS = (5.0, 15.0)
MEMORY_SAMPLE_MS = 100
_OPERATION_BYTES_MAX = ClusterConfig.__dataclass_fields__["operation_bytes_max"].default


@dataclasses.dataclass(frozen=True)
class Attack:
    """One row: how to install the attack on a built simulation of the workload."""

    key: str
    #: The catalogue scenario of the same attack (`python -m simulations run NAME`), with the
    #: simulator's test configuration instead of the shipped one.
    scenario: str
    #: install(simulation, run length in virtual ms)
    install: Callable[[Simulation, float], None]
    replicas: int = 4


def _large_requests(sim: Simulation, _: float) -> None:
    LargeRequestClients(count=8, requests=3).install(sim)


def _censoring_primary(sim: Simulation, _: float) -> None:
    sim.add_behaviour(0, CensoringPrimary(victim=sim.clients[0].session.client))


def _duplicate_batch(sim: Simulation, _: float) -> None:
    sim.add_behaviour(0, DuplicateBatchPrimary(from_sequence=sim.config.checkpoint_interval))


def _stash_flood(sim: Simulation, _: float) -> None:
    sim.add_behaviour(1, StashFlooder())


def _late_checkpoints(sim: Simulation, _: float) -> None:
    sim.network.slow_down(Checkpoint, 150, 300, destinations=[1, 2])


def _slow_primary_accomplice(sim: Simulation, _: float) -> None:
    sim.add_behaviour(0, SlowPrimary())
    sim.add_behaviour(2, WithholdCommits())  # the scenario's accomplice for seed 1


def _state_source(behaviour_name: str) -> Callable[[Simulation, float], None]:
    def install(sim: Simulation, _: float) -> None:
        sim.add_behaviour(3, getattr(byzantine, behaviour_name)())
        sim.at(1_000, lambda s: s.network.isolate(2, [0, 1, 3]))
        sim.at(6_000, lambda s: s.network.heal())

    return install


def _client_key_flood(sim: Simulation, virtual_ms: float) -> None:
    until_ms = int(virtual_ms)
    victims = tuple(c.session.client for c in sim.clients)
    sim.add_behaviour(1, byzantine.ClientRequestReplay(victims, until_ms=until_ms))
    add_byzantine_client(sim, "sybil", byzantine.SybilFlood(per_tick=2, until_ms=until_ms),
                         requests=0)


ATTACKS = (
    Attack("large_requests", "byz_large_requests", _large_requests),
    Attack("censoring_primary", "byz_censoring_primary", _censoring_primary),
    Attack("duplicate_batch", "byz_duplicate_batch", _duplicate_batch),
    Attack("slow_state_source", "byz_slow_state_source", _state_source("SlowStateSource")),
    Attack("client_key_flood", "byz_client_key_flood_replay", _client_key_flood),
    Attack("stash_flood", "byz_stash_flood", _stash_flood),
    Attack("fetch_state_flood", "byz_fetch_state_flood", _state_source("FetchStateFlooder")),
    Attack("late_checkpoints", "byz_late_checkpoints", _late_checkpoints),
    Attack("slow_primary_accomplice", "byz_slow_primary_withholding_accomplice",
           _slow_primary_accomplice, replicas=7),
)


def _workload(seed: int, replicas: int, clients: int, think_ms: float,
              virtual_s: float) -> Simulation:
    # More requests than any client can complete in the run: the load never runs out.
    requests = int(virtual_s * 1000 / max(think_ms, 1.0)) + 10
    return Simulation(
        seed=seed, replicas=replicas, clients=clients, requests_per_client=requests,
        think_ms=think_ms, make_operation=lambda c, i: kv_put(f"key-{c}", b"%d.%d" % (c, i)),
        network=NetworkProfile(*LATENCY_MS), config_overrides=SHIPPED_CONFIG,
        # Values as large as an operation may be (the large requests store theirs).
        app_factory=LargeRequestClients.app_factory(_OPERATION_BYTES_MAX),
        sample_memory_every_ms=MEMORY_SAMPLE_MS)


def measure(attack: Attack | None, seed: int, replicas: int, clients: int, think_ms: float,
            virtual_s: float) -> dict:
    """One run of `virtual_s` virtual seconds, fault-free (`attack` None) or under `attack`."""
    sim = _workload(seed, replicas, clients, think_ms, virtual_s)
    base = sim.clients[:clients]
    if attack is not None:
        attack.install(sim, virtual_s * 1000)
    started = time.perf_counter()
    sim.run(until_ms=virtual_s * 1000, liveness_bound_ms=virtual_s * 1000 + 1)
    wall_s = time.perf_counter() - started
    virtual = sim.now_us / 1e6
    completed = sum(1 for c in base for op in c.record.operations if op[2] is not None)
    waits = checkers.request_waits_ms(sim)
    correct = sim.correct_replicas()
    return {
        "attack": "fault-free" if attack is None else attack.key,
        "scenario": None if attack is None else attack.scenario,
        "replicas": replicas, "virtual_s": round(virtual, 3), "wall_s": round(wall_s, 2),
        "completed": completed, "requests_per_s": round(completed / virtual, 1),
        "max_request_wait_ms": round(max((w[2] for w in waits), default=0.0), 1),
        "view_changes": max(sim.replicas[r].view for r in correct),
        "peak_replica_bytes": max(sim.peak_bytes_held.get(r, 0) for r in correct),
        "oversized_dropped": sim.oversized_dropped,
        "request_wait_bound_ms": checkers.request_wait_bound_ms(sim.config),
        "trace_hash": sim.trace_hash(),
    }


#: The sweep's delays (ms) for a slow primary, under and over what backups tolerate (V1'').
SLOW_PRIMARY_DELAYS_MS = (25, 50, 75, 100, 200, 400, 900)


def _slow_primary_sweep(run: Callable[[Attack | None, int], dict],
                        fault_free: dict) -> dict[str, float]:
    """Throughput ratio per delay of a primary that holds each PRE-PREPARE that long."""
    floor_ms = _workload(1, 4, 1, 20.0, 1.0).config.propose_timeout // 5
    print(f"\na slow primary (n = 4, no accomplice); backups tolerate a proposal delay of three "
          f"of their commit rounds, at least {floor_ms} ms (V1'')")
    print(f"{'delay ms':>8} {'req/s':>7} {'ratio':>6} {'max wait ms':>11} {'views':>5}")
    ratios = {}
    for delay_ms in SLOW_PRIMARY_DELAYS_MS:
        attack = Attack(f"slow_primary_{delay_ms}ms", "byz_slow_primary_withholding_accomplice",
                        lambda sim, _, d=delay_ms: sim.add_behaviour(0, SlowPrimary(delay_ms=d)))
        row = run(attack, 4)
        ratio = round(row["requests_per_s"] / fault_free["requests_per_s"], 3)
        ratios[str(delay_ms)] = ratio
        print(f"{delay_ms:>8} {row['requests_per_s']:>7.1f} {ratio:>6.2f} "
              f"{row['max_request_wait_ms']:>11,.0f} {row['view_changes']:>5}")
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--virtual-s", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--think-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 5 virtual seconds (the figures mean little)")
    parser.add_argument("--slow-primary-sweep", action="store_true",
                        help="also measure a primary that delays each PRE-PREPARE by 25-900 ms")
    args = parser.parse_args(argv)
    virtual_s = 5.0 if args.quick else args.virtual_s

    def run(attack: Attack | None, replicas: int) -> dict:
        return measure(attack, args.seed, replicas, args.clients, args.think_ms, virtual_s)

    started = time.perf_counter()
    fault_free = {4: run(None, 4)}
    rows: list[dict] = [fault_free[4]]
    for attack in ATTACKS:
        if attack.replicas not in fault_free:
            fault_free[attack.replicas] = run(None, attack.replicas)
            rows.append(fault_free[attack.replicas])
        row = run(attack, attack.replicas)
        reference = fault_free[attack.replicas]["requests_per_s"]
        row["ratio"] = round(row["requests_per_s"] / reference, 3) if reference else 0.0
        rows.append(row)
    for row in fault_free.values():
        row["ratio"] = 1.0

    print(f"availability under attack: {args.clients} correct closed-loop clients (kv_put, "
          f"think {args.think_ms:g} ms), links {LATENCY_MS[0]:g}-{LATENCY_MS[1]:g} ms one way, "
          f"ClusterConfig as shipped, {virtual_s:g} virtual s per run, seed {args.seed}; "
          f"request wait bound (request_wait_bound_ms) {fault_free[4]['request_wait_bound_ms']:,}"
          f" ms at n = 4")
    print(f"{'attack':<24} {'n':>2} {'req/s':>7} {'ratio':>6} {'max wait ms':>11} "
          f"{'views':>5} {'peak bytes held':>15}")
    for row in rows:
        print(f"{row['attack']:<24} {row['replicas']:>2} {row['requests_per_s']:>7.1f} "
              f"{row['ratio']:>6.2f} {row['max_request_wait_ms']:>11,.0f} "
              f"{row['view_changes']:>5} {row['peak_replica_bytes']:>15,}")
    sweep = _slow_primary_sweep(run, fault_free[4]) if args.slow_primary_sweep else {}
    print(f"{len(rows) + len(sweep)} runs in {time.perf_counter() - started:.1f} s wall")

    attacked = [row for row in rows if row["attack"] != "fault-free"]
    summary = {
        "min_throughput_ratio": min((r["ratio"] for r in attacked), default=None),
        "max_request_wait_ms": max((r["max_request_wait_ms"] for r in attacked), default=None),
        "peak_replica_bytes": max((r["peak_replica_bytes"] for r in attacked), default=None),
        **{f"ratio_{r['attack']}": r["ratio"] for r in attacked},
        **({"slow_primary_ratio_by_delay_ms": sweep} if sweep else {}),
        "virtual_s": virtual_s,
        "runs": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
