"""The served-work oracle (issue 14, item 2; issue 11, item 7): what a correct replica sends one
peer as answers to its asks, per state_transfer_timeout_ms, against the budget the rate limits
and size bounds of S1'' promise (`checkers.served_work_budget`). Each check is tested twice: on
a whole run (a replica that ignores S1'' is flagged, a correct one is not) and on hand-fed
records (one check at a time).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pbft.core import Replica, sizes
from pbft.core.ready import Outbound
from pbft.core.state_transfer import chunk_requests_per_source
from pbft.messages import Checkpoint, StateChunk
from simulations import checkers
from simulations.broken import UnlimitedServerReplica, multiply_asks
from simulations.byzantine import Silent
from simulations.engine import Observer, Simulation
from simulations.scenarios import CATALOGUE, Scenario, run_scenario

# ------------------------------------------------------------------ whole runs

#: Each FETCH-STATE and FETCH-LOG is delivered this often: a correct fetcher paces its chunk
#: requests at q per source per period, so copies × q is far above the 3q a server may answer.
COPIES = 20


def _cut_off_and_fetch(cls: type[Replica]):
    """No Byzantine replica: backup 2 is cut off from 0.3 s to 2.5 s and fetches the state in
    64-byte chunks, over a network that delivers every ask COPIES times."""

    def build(seed: int) -> Simulation:
        sim = Simulation(seed=seed, requests_per_client=80, replica_class=cls,
                         config_overrides={"state_chunk_bytes": 64})
        sim.at(300, lambda s: s.network.isolate(2, [0, 1, 3]))
        sim.at(2_500, lambda s: s.network.heal())
        return multiply_asks(sim, COPIES)

    return Scenario("served_work_test", "cut off, fetch, asks multiplied", build,
                    served_work_budget=checkers.served_work_budget)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_replica_serving_without_rate_limits_is_flagged(seed: int) -> None:
    """S1'': every replica ignores the FETCH rate limits; the run is safe and live, and only
    the served-work oracle flags it, for the STATE-CHUNKs each served the fetching replica."""
    result = run_scenario(_cut_off_and_fetch(UnlimitedServerReplica), seed)
    assert result.liveness
    assert {v.checker for v in result.violations} == {"served_work"}
    flagged = {v.replicas for v in result.violations if "STATE-CHUNKs" in v.message}
    assert flagged == {(0,), (1,), (3,)}
    assert all("served replica 2 " in v.message for v in result.violations)


@pytest.mark.parametrize("seed", [1, 2])
def test_correct_replicas_absorb_multiplied_asks(seed: int) -> None:
    """S1'': the same run with correct replicas: their rate limits refuse the extra copies."""
    sim = _cut_off_and_fetch(Replica).build(seed)
    result = run_scenario(_cut_off_and_fetch(Replica), seed, simulation=sim)
    assert result.violations == []
    assert sum(r.dropped["fetch_state_rate_limited"] for r in sim.replicas) > 0


def test_the_flood_scenario_is_judged_and_clean() -> None:
    """Issue 11, item 7: the oracle is on in byz_fetch_state_flood, whose flooder the rate
    limits refuse (without them the oracle flags the servers: the test above)."""
    entry = CATALOGUE["byz_fetch_state_flood"]
    assert entry.served_work_budget is checkers.served_work_budget
    sim = entry.build(1)
    assert run_scenario(entry, 1, simulation=sim).violations == []
    assert sum(r.dropped["fetch_state_rate_limited"] for r in sim.replicas) > 0


#: Where a faulty replica asks for work (floods, spam, replays of old asks and VIEW-CHANGEs),
#: where correct replicas fetch state or log, issue 11's attacks and the benign baseline.
SWITCHED_ON = ("byz_fetch_state_flood", "byz_fetch_spam", "byz_replay",
               "byz_replay_during_view_change", "byz_view_change_spam", "byz_future_view_flood",
               "byz_client_flood", "byz_stash_flood", "byz_slow_state_source",
               "byz_corrupt_snapshot", "byz_corrupt_logged_batches", "byz_large_requests",
               "baseline", "crash_wipe_disk", "crash_all_restart")


def test_the_oracle_is_on_where_peers_ask_for_work() -> None:
    assert [name for name in SWITCHED_ON
            if CATALOGUE[name].served_work_budget is not checkers.served_work_budget] == []


# ------------------------------------------------------------------ hand-fed records


def _watch(behaviours: dict | None = None) -> tuple[Simulation, checkers.ServedWorkWatch]:
    sim = Simulation(seed=1, clients=0, behaviours=behaviours)
    return sim, checkers.ServedWorkWatch(checkers.served_work_budget(sim.config)).install(sim)


def _send(watch: checkers.ServedWorkWatch, server: int, to: tuple[int, ...], message,
          copies: int = 1) -> None:
    ready = SimpleNamespace(messages=(Outbound(to, message),) * copies, replies=())
    watch.readied(server, ready)


def _checkpoint(replica: int = 0) -> Checkpoint:
    return Checkpoint(8, b"d" * 32, replica, b"")


def _chunk(data_bytes: int) -> StateChunk:
    return StateChunk(8, 0, data_bytes, b"x" * data_bytes, (), 0, b"")


def test_budget_follows_the_rate_limits() -> None:
    """S1'': 3q STATE-CHUNKs (2q at once, q per period), n (3q + 2) CHECKPOINTs, 4L
    LOGGED-BATCHes, 1 + T // R NEW-VIEWs, per T = state_transfer_timeout_ms."""
    sim, watch = _watch()
    config, budget = sim.config, watch.budget
    q = chunk_requests_per_source(config.state_fetch_window, config.n - 1)
    assert budget.period_ms == config.state_transfer_timeout_ms
    assert budget.messages[StateChunk] == 3 * q
    assert budget.messages[Checkpoint] == config.n * (3 * q + 2)
    assert budget.bytes[StateChunk] == 3 * q * sizes.state_chunk_bytes_max(config)


def test_too_many_answers_in_one_period_are_flagged() -> None:
    sim, watch = _watch()
    most = watch.budget.messages[Checkpoint]
    _send(watch, 0, (3,), _checkpoint(), copies=most)
    assert watch.violations(sim) == []
    _send(watch, 0, (3,), _checkpoint())
    [violation] = watch.violations(sim)
    assert violation.checker == "served_work" and violation.replicas == (0,)
    assert f"replica 0 served replica 3 {most + 1:,} CHECKPOINTs" in violation.message


def test_answers_a_period_apart_are_judged_apart() -> None:
    """The window is one period of the server's clock: the bucket refills in between."""
    sim, watch = _watch()
    most = watch.budget.messages[Checkpoint]
    _send(watch, 0, (3,), _checkpoint(), copies=most)
    sim.replicas[0].now_ms += watch.budget.period_ms + 1
    _send(watch, 0, (3,), _checkpoint(), copies=most)
    assert watch.violations(sim) == []


def test_too_many_bytes_in_one_period_are_flagged() -> None:
    """No more STATE-CHUNKs than allowed, each twice as large as a chunk may be."""
    sim, watch = _watch()
    _send(watch, 0, (3,), _chunk(2 * sim.config.state_chunk_bytes),
          copies=watch.budget.messages[StateChunk])
    [violation] = watch.violations(sim)
    assert "bytes of STATE-CHUNKs" in violation.message
    assert f"at most {watch.budget.bytes[StateChunk]:,}" in violation.message


def test_messages_to_every_replica_are_not_answers() -> None:
    """A replica's own CHECKPOINTs (and a new primary's NEW-VIEW) go to all others: only what
    is sent to one replica answers that replica's ask."""
    sim, watch = _watch()
    _send(watch, 0, (1, 2, 3), _checkpoint(), copies=2 * watch.budget.messages[Checkpoint])
    assert watch.violations(sim) == []


def test_a_restarted_replica_is_judged_from_its_restart() -> None:
    """A restarted replica's rate limits start full: each incarnation has its own budget."""
    sim, watch = _watch()
    most = watch.budget.messages[Checkpoint]
    _send(watch, 0, (3,), _checkpoint(), copies=most)
    sim.crash(0)
    sim.restart(0)
    _send(watch, 0, (3,), _checkpoint(), copies=most)
    assert watch.violations(sim) == []


def test_a_byzantine_server_is_not_judged() -> None:
    sim, watch = _watch(behaviours={3: Silent()})
    _send(watch, 3, (0,), _checkpoint(3), copies=2 * watch.budget.messages[Checkpoint])
    assert watch.violations(sim) == []


def test_the_observer_the_run_had_still_sees_everything() -> None:
    class Counting(Observer):
        readies = deliveries = 0

        def readied(self, replica_id, ready) -> None:
            self.readies += 1

        def delivering(self, source, destination, message) -> None:
            self.deliveries += 1

    sim = Simulation(seed=1, clients=1, requests_per_client=3)
    inner = Counting()
    sim.observer = inner
    checkers.ServedWorkWatch(checkers.served_work_budget(sim.config)).install(sim)
    assert sim.run(until_ms=10_000)
    assert inner.readies > 0 and inner.deliveries > 0


def test_multiply_asks_refuses_fewer_than_one_copy() -> None:
    with pytest.raises(ValueError, match="copies must be >= 1"):
        multiply_asks(Simulation(seed=1, clients=0), 0)
