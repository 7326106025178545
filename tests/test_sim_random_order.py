"""The engine as the in-process driver: the random-order network (any message in flight may be
delivered next, drawn by the seed; no latency) and the step-wise API the whole-cluster tests
use (`submit`, `inject`, `deliver_one`, `deliver_all`, `advance_time`, `run_for`, `run_until`,
`run_workload`)."""

from __future__ import annotations

import pytest

from pbft.app import kv_append, kv_put
from pbft.config import ClusterConfig
from pbft.messages import Checkpoint, Prepare, Request

from simulations import checkers
from simulations.engine import SIMULATION_CONFIG, Observer, Simulation
from simulations.network import NetworkProfile

RANDOM_ORDER = NetworkProfile(random_order=True)


def _sim(seed: int = 1, **options) -> Simulation:
    return Simulation(seed=seed, clients=0, network=RANDOM_ORDER, **options)


class _Deliveries(Observer):
    """Records each delivery (source, destination, message type) in order."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def delivering(self, source, destination, message) -> None:
        self.seen.append((source, destination, type(message).__name__))


def _order(seed: int) -> tuple[list[tuple], str]:
    sim = _sim(seed)
    sim.observer = _Deliveries()
    clients = [sim.add_client(f"c{i}") for i in range(3)]
    sim.run_workload(clients, 3, lambda c, i: kv_append("k", b"%d%d" % (c, i)))
    sim.deliver_all()
    return sim.observer.seen, sim.trace_hash()


def test_the_seed_alone_decides_the_delivery_order():
    """Same seed, same order and trace hash; another seed, another order."""
    assert _order(3) == _order(3)
    assert _order(3)[0] != _order(4)[0]


def test_no_virtual_time_passes_while_messages_are_in_flight():
    """N1–N8 without a clock: a request commits at every replica by deliveries alone."""
    sim = _sim()
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"v"))
    assert sim.in_flight == 4  # a first request goes to every replica
    delivered = sim.deliver_all()
    assert delivered > 10 and sim.in_flight == 0
    assert sim.now_ms == 0
    assert [r.last_executed for r in sim.replicas] == [1, 1, 1, 1]
    assert len(client.results) == 1 and client.done


def test_ms_per_delivery_makes_each_delivery_take_that_long():
    sim = Simulation(seed=1, clients=0,
                     network=NetworkProfile(random_order=True, ms_per_delivery=2))
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"v"))
    delivered = sim.deliver_all()
    assert sim.now_ms == 2 * delivered
    assert len(client.results) == 1


@pytest.mark.parametrize("options, complaint", [
    ({"random_order": True, "ms_per_delivery": -1}, "must not be negative"),
    ({"ms_per_delivery": 1}, "random_order only"),
])
def test_a_bad_random_order_profile_is_refused(options, complaint):
    with pytest.raises(ValueError, match=complaint):
        NetworkProfile(**options)


def test_clogs_and_slowdowns_need_latency():
    """They hold messages until a time; random order gives messages no arrival time."""
    sim = _sim()
    with pytest.raises(ValueError, match="clog needs a network with latency"):
        sim.network.clog(0, 1, 1_000)
    with pytest.raises(ValueError, match="slow_down needs a network with latency"):
        sim.network.slow_down(Prepare, 1, 2)


def test_partitions_and_lose_rules_apply_in_random_order():
    """The network's faults decide which copies join the messages in flight."""
    sim = _sim()
    cut = sim.network.partition([3], [0, 1, 2])
    sim.network.lose(Checkpoint, 1.0)
    client = sim.add_client("a")
    sim.run_workload([client], 9, lambda c, i: kv_put("k", b"%d" % i))
    sim.deliver_all()
    assert sim.replicas[3].last_executed == 0, "replica 3 heard no PRE-PREPARE"
    assert sim.replicas[0].last_executed == 9
    assert sim.network.lost_by_type["Checkpoint"] >= 3
    assert all(r.stable_checkpoint == 0 for r in sim.replicas)
    sim.network.heal(cut)
    assert sim.network.copies(3, 0, None) == 1


def test_duplication_in_random_order_delivers_copies_twice():
    """N8: every message is delivered twice; each request still executes once."""
    sim = Simulation(seed=1, clients=0, network=NetworkProfile(duplication=1.0,
                                                               random_order=True))
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"v"))
    assert sim.in_flight == 8
    sim.deliver_all()
    assert len(client.results) == 1
    assert all(len(sim.executed[r]) == 1 for r in range(4))


def test_a_closed_loop_client_submits_its_next_request_before_the_next_delivery():
    """Events due now run before messages in flight: with no think time the next request goes
    out as the result is accepted, while the other replies are still in flight (a closed loop
    at full speed, so batches fill as they would with many clients)."""
    sim = _sim()
    sim.observer = _Deliveries()
    at_result: list[int] = []
    at_submit: list[int] = []

    class Results(_Deliveries):
        def client_result(self, client, result) -> None:
            at_result.append(len(sim.observer.seen))

    sim.observer = Results()

    def operation(c, i):
        at_submit.append(len(sim.observer.seen))
        return kv_put("k", b"%d" % i)

    client = sim.add_client("a")
    sim.run_workload([client], 5, operation)
    assert at_submit[1:] == at_result[:-1]
    assert sim.now_ms == 0


def test_advance_time_fires_timers_but_delivers_nothing_in_flight():
    """N9: the client's retry timer fires; the copies it sends stay in flight."""
    sim = _sim(config_overrides={"client_retry_timeout_ms": 100})
    sim.crash(0)
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"v"))
    sim.deliver_all()  # lost: the primary is down
    sim.advance_time(150)
    assert sim.now_ms == 150
    assert client.session.retransmissions == 1
    assert sim.in_flight == 4, "multicast to every replica, none delivered yet"
    with pytest.raises(ValueError, match="must not be negative"):
        sim.advance_time(-1)


def test_run_for_and_run_until_deliver_and_fire_timers():
    """V1–V3: with the primary down, a view change lets the request commit."""
    sim = _sim(config_overrides={"request_timeout_ms": 500, "client_retry_timeout_ms": 100})
    sim.crash(0)
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"v"))
    assert sim.run_until(lambda: client.done, within_ms=10_000)
    assert all(r.view == 1 for r in sim.replicas[1:])
    now = sim.now_ms
    sim.run_for(1_000)
    assert sim.now_ms == now + 1_000
    with pytest.raises(ValueError, match="must not be negative"):
        sim.run_for(-5)
    assert not sim.run_until(lambda: False, within_ms=50)


def test_run_workload_refuses_a_negative_count_and_reports_an_unfinished_workload():
    sim = _sim()
    client = sim.add_client("a")
    with pytest.raises(ValueError, match="must not be negative"):
        sim.run_workload([client], -1)
    for r in range(4):
        sim.crash(r)
    with pytest.raises(RuntimeError, match="2 operations unanswered"):
        sim.run_workload([client], 2, within_ms=1_000)


def test_a_client_submits_one_request_at_a_time():
    sim = _sim()
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"1"))
    with pytest.raises(RuntimeError, match="still outstanding"):
        sim.submit(client, kv_put("k", b"2"))


def test_deliver_one_on_a_latency_network_runs_time_to_the_earliest_delivery():
    sim = Simulation(seed=1, clients=0, network=NetworkProfile(5, 5))
    assert not sim.deliver_one()
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"v"))
    assert sim.in_flight == 4
    assert sim.deliver_one()
    assert sim.now_ms == 5 and sim.deliveries == 1
    sim.deliver_all()
    assert len(client.results) == 1


def test_injected_messages_are_delivered_and_judged_by_the_replica():
    """N8: a request injected again under its client's name runs once; a forged one (another
    key's signature) is refused."""
    sim = _sim()
    client = sim.add_client("a")
    sim.submit(client, kv_put("k", b"v"))
    request = client.session.outstanding
    sim.deliver_all()
    for r in range(4):
        sim.inject(r, request, source=client.client)
    forged = Request(kv_put("k", b"stolen"), 10**9, client.client, False, b"\0" * 64)
    sim.inject(1, forged, source="mallory")
    sim.deliver_all()
    assert all(len(sim.executed[r]) == 1 for r in range(4))
    assert sim.replicas[1].dropped["bad_request_signature"] == 1


def test_a_scenario_run_on_a_random_order_network_passes_the_checkers():
    """The whole driver works in this mode: closed-loop clients with think time, a crash and a
    restart, then the safety and evidence checkers."""
    sim = Simulation(seed=5, clients=3, requests_per_client=6, network=RANDOM_ORDER)
    sim.at(30, lambda s: s.crash(2))
    sim.at(400, lambda s: s.restart(2))
    assert sim.run(until_ms=30_000)
    for check in (checkers.agreement, checkers.single_vote, checkers.validity,
                  checkers.exactly_once, checkers.evidence):
        assert check(sim) == [], check.__name__
    assert sim.committed() == 18


def test_the_shipped_configuration_on_request():
    simulated = Simulation(seed=1, clients=0)
    shipped = Simulation(seed=1, clients=0, shipped_config=True,
                         config_overrides={"log_window": 256})
    default = ClusterConfig(replicas=simulated.config.replicas)
    assert simulated.config.request_timeout_ms == SIMULATION_CONFIG["request_timeout_ms"]
    assert shipped.config.request_timeout_ms == default.request_timeout_ms
    assert shipped.config.checkpoint_interval == default.checkpoint_interval
    assert shipped.config.log_window == 256


@pytest.mark.parametrize("compact", [True, False])
def test_compact_storage_decides_whether_records_below_the_stable_checkpoint_stay(compact):
    sim = _sim(compact_storage=compact, config_overrides={"checkpoint_interval": 2,
                                                            "log_window": 8})
    client = sim.add_client("a")
    sim.run_workload([client], 8, lambda c, i: kv_put("k", b"%d" % i))
    sim.deliver_all()
    assert sim.replicas[1].stable_checkpoint >= 4
    oldest = min(m.sequence for m in sim.storages[1].records if isinstance(m, Checkpoint))
    assert (oldest == 2) is not compact
