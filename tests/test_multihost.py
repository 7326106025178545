"""Replicas on separate hosts (issue 13: item 3 and "Multi-host tests").

Each replica runs in its own network namespace (its own network stack), the four joined by a
bridge in a namespace of its own, with a client host beside them (tests/netns.py); the root
namespace has no address on that network, so `pbft status` and the load generator run on the
client host, as an operator's and a user's machine would. Every scenario runs closed-loop
clients through a fault and then checks, through `pbft status` on the client host:

- agreement: every replica at the same sequence number with the same state digest, in the same
  view, healthy (`pbft status` itself checks that each answer is the replica it asked, of this
  cluster);
- view changes where they should happen and only there: the installed view moves past 0 only
  when the primary was cut off or killed; a backup cut off may start a view change of its own
  (V1'), nobody else may;
- the longest stall: no gap between two completed requests, and no request, longer than the
  documented bound (README, "Liveness": `request_wait_bound_s`, 21 s with the shipped
  configuration), and no request failed.

The suite runs in `make test` when this machine can create network namespaces (root, iproute2,
veth, bridge, tc tbf) and is skipped, saying why, when it cannot. The longest scenarios run
with --run-slow.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pbft import config as config_module
from pbft.config import ClusterConfig, ConfigError, ReplicaInfo
from pbft.runtime.cli import check_identity, cluster_health
from pbft.runtime.cluster import LocalCluster, generate_cluster, parse_hosts

from . import netns

PBFT = [sys.executable, "-m", "pbft.runtime.cli"]
NETNS_UNAVAILABLE = netns.available()
needs_netns = pytest.mark.skipif(
    NETNS_UNAVAILABLE is not None, reason=f"multi-host suite needs network namespaces: "
                                          f"{NETNS_UNAVAILABLE}"
)  # fmt: skip
#: Replicas listen on this port on every host (their metrics on + 1000).
BASE_PORT = 7000
#: Closed-loop clients of the load generator.
CLIENTS = 2
#: A healed replica must be back within this of the network healing (issue 13, item 1): the
#: transport's rejoin bound (heartbeat timeout + handshake timeout + reconnect pause, 8 s with
#: `pbft replica`'s defaults), plus one catch-up and a loaded machine's slack.
REJOIN_BOUND_S = 10.0


def request_wait_bound_s(config: ClusterConfig) -> float:
    """README, "Liveness": the longest a correct client's request waits once the network is
    stable (simulations.checkers.request_wait_bound_ms, repeated here: tests of the runtime do
    not import the simulator)."""
    f = config.f
    return (config.client_retry_timeout_ms + (f + 1) * 2 * config.request_timeout_ms
            + (2 ** (f + 1) - 1) * config.view_change_timeout_ms) / 1000  # fmt: skip


# ---------------------------------------------------------------------------- item 3 (no netns)


def _keys(n: int = 4) -> list[bytes]:
    return [bytes([i + 1]) * 32 for i in range(n)]


def test_metrics_address_is_configured_validated_and_round_trips():
    replicas = [ReplicaInfo(i, k, f"10.0.0.{i}", 7000 + i) for i, k in enumerate(_keys())]
    replicas[1] = ReplicaInfo(1, _keys()[1], "10.0.0.1", 7001, metrics_host="192.168.0.1")
    replicas[2] = ReplicaInfo(2, _keys()[2], "10.0.0.2", 7002, metrics_port=9100)
    config = ClusterConfig.create(replicas)
    assert [r.metrics_address() for r in config.replicas] == [
        ("10.0.0.0", 8000), ("192.168.0.1", 8001), ("10.0.0.2", 9100), ("10.0.0.3", 8003),
    ]  # fmt: skip
    assert config_module.loads(config_module.dumps(config)) == config
    assert ReplicaInfo(0, _keys()[0], "h", 0).metrics_address() is None
    bad = {
        "metrics_port must be an integer in 1..65535": dict(metrics_port=0),
        "metrics_host must be a non-empty string": dict(metrics_host=""),
        "is the replica's own address": dict(metrics_port=7000),
    }
    for message, fields in bad.items():
        with pytest.raises(ConfigError, match=message):
            ClusterConfig.create([ReplicaInfo(0, _keys()[0], "10.0.0.0", 7000, **fields),
                                  *replicas[1:]])  # fmt: skip
    text = config_module.dumps(config).replace("metrics_port = 9100", 'metrics_port = "x"')
    with pytest.raises(ConfigError, match=r"replicas\[2\].metrics_port must be an integer"):
        config_module.loads(text)


def test_cluster_id_names_keys_and_bounds_not_addresses():
    replicas = [ReplicaInfo(i, k, "127.0.0.1", 7000 + i) for i, k in enumerate(_keys())]
    config = ClusterConfig.create(replicas)
    moved = ClusterConfig.create([ReplicaInfo(r.id, r.public_key, "0.0.0.0", r.port,
                                              metrics_host="10.1.1.1") for r in replicas])  # fmt: skip
    assert moved.cluster_id == config.cluster_id
    assert ClusterConfig.create(replicas, request_timeout_ms=3000).cluster_id != config.cluster_id
    other = ClusterConfig.create([ReplicaInfo(i, bytes([i + 9]) * 32) for i in range(4)])
    assert other.cluster_id != config.cluster_id


def test_parse_hosts():
    assert parse_hosts("a,b:7100,[::1],[fe80::1]:9", 4) == [
        ("a", None), ("b", 7100), ("::1", None), ("fe80::1", 9)]  # fmt: skip
    for text, message in [("a,,b,c", "empty"), ("a,b:0,c,d", "port"), ("a,b,c", "3 addresses")]:
        with pytest.raises(ConfigError, match=message):
            parse_hosts(text, 4)


def test_keygen_hosts_writes_one_address_per_replica(tmp_path):
    result = subprocess.run([*PBFT, "keygen", "--replicas", "4", "--out", str(tmp_path),
                             "--hosts", "10.0.0.1,10.0.0.2,host3:7300,10.0.0.4"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = config_module.load(tmp_path / "cluster.toml")
    assert [(r.host, r.port, r.metrics_address()) for r in config.replicas] == [
        ("10.0.0.1", 7000, ("10.0.0.1", 8000)), ("10.0.0.2", 7001, ("10.0.0.2", 8001)),
        ("host3", 7300, ("host3", 8300)), ("10.0.0.4", 7003, ("10.0.0.4", 8003)),
    ]  # fmt: skip
    assert "metrics 10.0.0.2:8001" in result.stdout
    result = subprocess.run([*PBFT, "keygen", "--replicas", "4", "--out", str(tmp_path / "x"),
                             "--hosts", "a,b,c"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "3 addresses for 4 replicas" in result.stderr


def _status_answer(config: ClusterConfig, replica_id: int, **changes) -> dict:
    answer = {
        "replica": replica_id, "public_key": config.public_key(replica_id).hex(),
        "cluster_id": config.cluster_id, "view": 0, "primary": 0, "last_executed": 5,
        "low_watermark": 0, "behind": 0, "behind_max": 64, "recovering": False,
        "state_digest": "ab" * 32, "committed_requests": 5, "connected_peers": [1, 2, 3],
        "health": "ok",
    }  # fmt: skip
    answer.update(changes)
    return answer


def test_status_judges_identity_and_divergence():
    config = ClusterConfig.create([ReplicaInfo(i, k, "127.0.0.1", 7000 + i)
                                   for i, k in enumerate(_keys())])  # fmt: skip
    good = _status_answer(config, 2)
    assert check_identity(good, 2, config) is good
    assert check_identity(good, 1, config).startswith("wrong replica (answered as replica 2")
    forged = _status_answer(config, 1, public_key="00" * 32)
    assert check_identity(forged, 1, config).startswith("wrong replica")
    other = _status_answer(config, 2, cluster_id="ff" * 32)
    assert check_identity(other, 2, config).startswith("other cluster")
    assert check_identity({"replica": 2}, 2, config).startswith("bad answer")
    assert check_identity([], 2, config).startswith("bad answer")
    results = [_status_answer(config, i) for i in range(4)]
    results[3]["state_digest"] = "cd" * 32
    judged = cluster_health(results)
    assert [health for health, _ in judged[:3]] == ["ok"] * 3
    assert judged[3][0] == "DIVERGED (state digest differs at 5)"
    # Replicas at different sequence numbers are not compared; a two-two split flags all four.
    results[3]["last_executed"] = 4
    assert [health for health, _ in cluster_health(results)] == ["ok"] * 4
    results = [_status_answer(config, i, state_digest=d) for i, d in enumerate("aabb")]
    assert all(health.startswith("DIVERGED") for health, _ in cluster_health(results))


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*PBFT, *args], capture_output=True, text=True, timeout=timeout)


def test_status_refuses_a_replica_answering_at_another_replicas_address(tmp_path):
    """Issue 13, item 3 over real sockets: with replica 1's metrics address pointing at replica
    0's endpoint (the old "same port on every host" reading the local replica four times),
    `pbft status` says that replica 0 answered for replica 1 instead of reporting it ok; a
    configuration of another cluster at the same addresses is refused for every replica."""
    files = generate_cluster(tmp_path / "a", clients=1)
    config = files.config
    with LocalCluster(files) as cluster:
        cluster.start_all()
        for i in range(4):
            cluster.wait_ready_blocking(i)
        result = _run_cli("status", "--config", str(files.config_path))
        assert result.returncode == 0 and "4 of 4 replicas healthy" in result.stdout, result
        zero = config.replicas[0].metrics_address()
        misdirected = [*config.replicas]
        misdirected[1] = ReplicaInfo(1, misdirected[1].public_key, misdirected[1].host,
                                     misdirected[1].port, metrics_port=zero[1])  # fmt: skip
        wrong = tmp_path / "misdirected.toml"
        config_module.dump(ClusterConfig(tuple(misdirected), clients=config.clients), wrong)
        result = _run_cli("status", "--config", str(wrong), "--json")
        statuses = json.loads(result.stdout)
        assert statuses[1].startswith("wrong replica (answered as replica 0"), statuses[1]
        assert [isinstance(s, dict) for s in statuses] == [True, False, True, True]
        other = tmp_path / "other.toml"
        config_module.dump(ClusterConfig(config.replicas, clients=config.clients,
                                         request_timeout_ms=3000), other)  # fmt: skip
        result = _run_cli("status", "--config", str(other))
        assert result.returncode == 1 and result.stdout.count("other cluster") == 4, result


def test_bench_measures_a_running_cluster(tmp_path):
    files = generate_cluster(tmp_path / "c", clients=2)
    with LocalCluster(files, replica_args=["--app", "bench"]) as cluster:
        cluster.start_all()
        for i in range(4):
            cluster.wait_ready_blocking(i)
        result = _run_cli("bench", "--config", str(files.config_path), "--clients", "2",
                          "--duration", "0.5", "--only", "ordered_0_0", timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout.splitlines()[-1])["ordered_0_0_requests_per_s"] > 0
        assert all(cluster.running(i) for i in range(4)), "bench started no cluster of its own"
        refused = _run_cli("bench", "--config", str(files.config_path), "--only",
                           "unreplicated_0_0")  # fmt: skip
        assert refused.returncode == 2 and "unreplicated" in refused.stderr


# ---------------------------------------------------------------------------- the netns suite


@dataclass
class MultiHost:
    net: netns.Network
    files: object
    cluster: LocalCluster
    directory: Path
    load_process: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    @property
    def config(self) -> ClusterConfig:
        return self.cluster.config

    def note(self, text: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {text}")

    def status(self) -> tuple[int, list]:
        """`pbft status --json` run on the client host: (exit code, one entry per replica)."""
        result = subprocess.run(
            [*self.net.exec_prefix("client"), *PBFT, "status", "--config",
             str(self.files.config_path), "--json", "--timeout", "3"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        try:
            return result.returncode, json.loads(result.stdout.splitlines()[0])
        except (IndexError, ValueError):
            raise AssertionError(f"pbft status printed no JSON: {result.stderr}") from None

    def wait(self, condition, timeout_s: float, what: str) -> list:
        deadline = time.monotonic() + timeout_s
        statuses: list = []
        while time.monotonic() < deadline:
            for i in range(self.config.n):
                if self.cluster.processes.get(i) and not self.cluster.running(i):
                    self.cluster._check_alive(i)
            _, statuses = self.status()
            if condition(statuses):
                return statuses
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout_s} s; last status: {statuses}\n"
                             + "\n".join(self.log))  # fmt: skip

    def start_load(self) -> None:
        self.load_path = self.directory / "load.jsonl"
        with open(self.directory / "load.log", "ab") as log_file:
            self.load_process = subprocess.Popen(
                [*self.net.exec_prefix("client"), sys.executable, "-m", "tests.netns", "load",
                 "--config", str(self.files.config_path), "--keys",
                 str(self.files.directory / "keys"), "--clients", str(CLIENTS),
                 "--out", str(self.load_path)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while not self.completions():
            assert self.load_process.poll() is None, (self.directory / "load.log").read_text()
            assert time.monotonic() < deadline, "the load generator completed nothing in 90 s"
            time.sleep(0.2)
        self.note("load running")

    def entries(self) -> list[dict]:
        try:
            lines = self.load_path.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def completions(self) -> list[dict]:
        return [e for e in self.entries() if "latency" in e]

    def stop_load(self) -> list[dict]:
        assert self.load_process is not None
        self.load_process.send_signal(signal.SIGTERM)
        try:
            self.load_process.wait(30)
        except subprocess.TimeoutExpired:
            self.load_process.kill()
            self.load_process.wait()
        self.note("load stopped")
        return self.entries()


@pytest.fixture
def multihost(tmp_path):
    with netns.Network(4) as net:
        hosts = [(net.address(i), None) for i in range(4)]
        files = generate_cluster(tmp_path / "cluster", clients=CLIENTS, base_port=BASE_PORT,
                                 hosts=hosts)  # fmt: skip
        with LocalCluster(files, wrap=net.exec_prefix) as cluster:
            setup = MultiHost(net, files, cluster, tmp_path)
            cluster.start_all()
            setup.wait(lambda s: all(isinstance(x, dict) and x["health"] == "ok" for x in s),
                       90, "every replica up and ok")  # fmt: skip
            setup.note("cluster up")
            try:
                yield setup
            finally:
                if setup.load_process is not None and setup.load_process.poll() is None:
                    setup.load_process.kill()
                    setup.load_process.wait()


def longest_stall(entries: list[dict]) -> float:
    """The longest time without a completed request, from the first completion to the load's
    end (a request still waiting when the load stops counts up to then), and the longest
    single request, whichever is longer."""
    times = sorted(e["t"] for e in entries if "latency" in e)
    stopped = [e["stopped"] for e in entries if "stopped" in e]
    ends = times + stopped
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    latencies = [e["latency"] for e in entries if "latency" in e]
    return max(gaps + latencies, default=0.0)


def check_after(setup: MultiHost, entries: list[dict], *, view_change: bool,
                lone_view_change: int | None = None) -> list[dict]:  # fmt: skip
    """The checks every scenario ends with (see the module docstring); returns the statuses."""
    config = setup.config
    failed = [e for e in entries if "failed" in e]
    assert not failed, f"requests failed: {failed[:3]}\n" + "\n".join(setup.log)
    assert len([e for e in entries if "latency" in e]) > 0
    stall = longest_stall(entries)
    bound = request_wait_bound_s(config)
    assert stall <= bound, (f"longest stall {stall:.1f} s exceeds the documented bound "
                            f"{bound:.0f} s\n" + "\n".join(setup.log))  # fmt: skip

    def agreed(statuses: list) -> bool:
        if not all(isinstance(s, dict) and s["health"] in SETTLED for s in statuses):
            return False
        return len({(s["last_executed"], s["state_digest"], s["view"]) for s in statuses}) == 1

    statuses = setup.wait(agreed, 60, "every replica at one sequence number, digest and view")
    assert statuses[0]["last_executed"] > 0
    views = {s["view"] for s in statuses}
    if view_change:
        assert views.pop() >= 1, statuses
    else:
        assert views == {0}, f"a view change without a faulty primary: {statuses}"
        started = {s["replica"]: s["view_changes_started"] for s in statuses}
        others = [r for r, count in started.items() if count and r != lone_view_change]
        assert not others, f"replicas {others} started view changes: {started}"
    return statuses


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


#: After a fault ends, with clients still sending, every replica must be healthy in one view
#: within this (a replica that changed view alone goes back to the others' view once it hears
#: from them, V5'; new requests are what it hears).
SETTLE_S = 45.0


#: Healthy, or following: a replica whose lone view change found no support follows the
#: others' view without voting until the next view change (V5'), by design.
SETTLED = ("ok", "following")


def settle(setup: MultiHost) -> None:
    """Keep the load running until every replica is healthy in one view (bounded)."""
    setup.wait(lambda s: all(isinstance(x, dict) and x["health"] in SETTLED for x in s)
               and len({x["view"] for x in s}) == 1, SETTLE_S,
               "every replica healthy in one view with clients running")  # fmt: skip
    setup.note("settled")


@needs_netns
def test_baseline(multihost):
    multihost.start_load()
    _sleep(5)
    check_after(multihost, multihost.stop_load(), view_change=False)


@needs_netns
def test_rate_limited_links(multihost):
    """Every host sends at 2 Mbit/s at most: slower, never stalled, no view change."""
    for host in [*range(4), "client"]:
        multihost.net.rate_limit(host, "2mbit")
    multihost.start_load()
    _sleep(8)
    check_after(multihost, multihost.stop_load(), view_change=False)


def _primary_fault_then_heal(multihost, fault, what: str, *, fault_s: float,
                             healed_s: float) -> None:
    """Under load, `fault(0)` on the primary for `fault_s`, then healed for `healed_s`; then
    the checks every scenario ends with (`check_after`), a view change among them."""
    multihost.start_load()
    fault(0)
    multihost.note(f"primary {what}")
    _sleep(fault_s)
    multihost.net.heal(0)
    multihost.note("primary healed")
    _sleep(healed_s)
    settle(multihost)
    check_after(multihost, multihost.stop_load(), view_change=True)


@needs_netns
@pytest.mark.slow
def test_primary_partitioned_for_10_s(multihost):
    """The primary (replica 0) cut off silently for 10 s: the others change view and serve;
    healed, it follows the new view and agrees."""
    _primary_fault_then_heal(multihost, multihost.net.cut, "cut off", fault_s=10, healed_s=8)


@needs_netns
@pytest.mark.parametrize("direction", ["out", "in"])
def test_primary_one_way_partition(multihost, direction):
    """The primary hears everyone but nobody hears it ("out"), or it is heard but hears
    nobody ("in"), for 8 s: either way the backups replace it, and healed it agrees."""
    block = multihost.net.block_out if direction == "out" else multihost.net.block_in
    _primary_fault_then_heal(multihost, block, f"blocked {direction}", fault_s=8, healed_s=6)


@needs_netns
def test_flapping_backup_link(multihost):
    """Backup 2's link goes down and up every second for 10 s: the others never stall or
    change view; replica 2 catches up."""
    multihost.start_load()
    for _ in range(5):
        multihost.net.link_down(2)
        _sleep(1)
        multihost.net.link_up(2)
        _sleep(1)
    multihost.note("flapping over")
    _sleep(4)
    settle(multihost)
    check_after(multihost, multihost.stop_load(), view_change=False, lone_view_change=2)


@needs_netns
@pytest.mark.slow
def test_backup_cut_off_30_s_rejoins_promptly(multihost):
    """Backup 3 cut off silently for 30 s while clients keep sending (and retransmitting);
    healed, it must have caught up with where the others were within REJOIN_BOUND_S."""
    multihost.start_load()
    multihost.net.cut(3)
    multihost.note("backup 3 cut off")
    _sleep(30)
    _, statuses = multihost.status()
    target = max(s["last_executed"] for s in statuses if isinstance(s, dict))
    multihost.net.heal(3)
    healed = time.monotonic()
    multihost.note(f"backup 3 healed; others at {target}")
    multihost.wait(lambda s: isinstance(s[3], dict) and s[3]["last_executed"] >= target,
                   60, "backup 3 catching up after healing")  # fmt: skip
    rejoined = time.monotonic() - healed
    multihost.note(f"backup 3 at {target} after {rejoined:.1f} s")
    entries = multihost.stop_load()
    check_after(multihost, entries, view_change=False, lone_view_change=3)
    assert rejoined <= REJOIN_BOUND_S, "\n".join(multihost.log)


@needs_netns
@pytest.mark.parametrize("victim", [0, 2], ids=["primary", "backup"])
def test_kill_9(multihost, victim):
    """kill -9 of the primary (a view change follows) or of a backup (none does), restarted
    after 6 s: it recovers from its disk and agrees."""
    multihost.start_load()
    multihost.cluster.kill(victim, signal.SIGKILL)
    multihost.note(f"replica {victim} killed")
    _sleep(6)
    multihost.cluster.start(victim)
    multihost.note(f"replica {victim} restarted")
    _sleep(6)
    settle(multihost)
    check_after(multihost, multihost.stop_load(), view_change=victim == 0,
                lone_view_change=victim)  # fmt: skip


def test_the_readme_multi_host_keygen_line_runs_as_written(tmp_path):
    """README, "Replicas on separate hosts": its keygen line, run as written (from a checkout
    with `.venv`), writes one address per host; the replica, status and bench lines need the
    hosts, which the namespace scenarios above provide."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Replicas on separate hosts"):]
    line = next(x for x in section.splitlines() if x.startswith(".venv/bin/pbft keygen"))
    argv = line.split()[1:]
    assert re.search(r"--hosts \S+", line)
    result = subprocess.run([sys.executable, "-m", "pbft.runtime.cli", *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    config = config_module.load(tmp_path / "cluster" / "cluster.toml")
    assert [r.host for r in config.replicas] == [f"10.0.0.{i}" for i in range(1, 5)]
