"""Real replica processes on 127.0.0.1 (issue 5, "What must be shown"): `python -m
pbft.runtime.cli replica` processes with TLS and SQLite storage, driven by the async client;
replicas are killed with SIGKILL and restarted. Each scenario starts its own cluster on free
ports with short timers; every wait is bounded."""

from __future__ import annotations

import signal

import pytest
import trio

from benchmarks.runtime_crash_all import FAST_BOUNDS, crash_all_round
from pbft.app import kv_append, kv_decode_result
from pbft.runtime.client import connect
from pbft.runtime.cluster import LocalCluster, generate_cluster


async def append_load(client, clients: int, per_client: int, tag: str) -> dict[int, list[bytes]]:
    """`clients` concurrent callers each append `per_client` unique tokens to their own key;
    returns each caller's results in order."""
    results: dict[int, list[bytes]] = {c: [] for c in range(clients)}

    async def caller(c: int) -> None:
        for i in range(per_client):
            results[c].append(await client.submit(kv_append(f"{tag}{c}", b"%d," % i)))

    async with trio.open_nursery() as nursery:
        for c in range(clients):
            nursery.start_soon(caller, c)
    return results


def check_appends(results: dict[int, list[bytes]], per_client: int) -> None:
    """Exactly once, in order: the i-th append of a key returns the first i + 1 tokens."""
    for values in results.values():
        assert len(values) == per_client
        for i, value in enumerate(values):
            assert kv_decode_result(value) == ("ok", b"".join(b"%d," % k for k in range(i + 1)))


async def wait_status(cluster: LocalCluster, replica_id: int, condition, timeout_s: float):
    """Poll replica `replica_id`'s /status until `condition(status)` holds; return it."""
    status = None
    with trio.move_on_after(timeout_s):
        while True:
            status = await cluster.status(replica_id)
            if status is not None and condition(status):
                return status
            await trio.sleep(0.1)
    raise AssertionError(f"replica {replica_id}: condition not met in {timeout_s} s: {status}")


@pytest.mark.trio
async def test_four_replica_processes_serve_a_thousand_requests_each_result_once(tmp_path):
    """N6-N8: 10 concurrent callers (one client, a pool of 10 identities) submit 1,000
    appends; each call gets one result, and each result shows its append executed exactly
    once and in order."""
    files = generate_cluster(tmp_path, clients=10, bounds=FAST_BOUNDS)
    with trio.fail_after(90), LocalCluster(files) as cluster:
        cluster.start_all()
        await cluster.wait_all_ready()
        async with connect(files.config, files.client_signers(), wait_connected_s=10) as client:
            results = await append_load(client, 10, 100, "k")
            check_appends(results, 100)
            stats = client.statistics()
            assert stats.completed == 1000 and stats.failed == 0
        statuses = [await cluster.status(i) for i in range(4)]
        executed = {s["last_executed"] for s in statuses}
        assert min(executed) > 0 and all(s["health"] == "ok" for s in statuses), statuses
        metrics = await cluster.metrics(1)
        assert "pbft_requests_committed_total" in metrics
        assert 'pbft_request_latency_seconds_bucket{le="+Inf"}' in metrics


@pytest.mark.trio
async def test_a_backup_killed_and_restarted_catches_up_and_votes_again(tmp_path):
    """S1 after a crash: a backup killed with SIGKILL misses batches, restarts from its storage,
    catches up; then, with another backup down, progress needs its PREPAREs and COMMITs."""
    files = generate_cluster(tmp_path, clients=4, bounds=FAST_BOUNDS)
    with trio.fail_after(90), LocalCluster(files) as cluster:
        cluster.start_all()
        await cluster.wait_all_ready()
        async with connect(files.config, files.client_signers(), wait_connected_s=10) as client:
            check_appends(await append_load(client, 4, 10, "a"), 10)
            cluster.kill(3, signal.SIGKILL)
            check_appends(await append_load(client, 4, 60, "b"), 60)  # n - 1 replicas suffice
            behind = (await cluster.status(0))["last_executed"]
            cluster.start(3)
            restarted = await cluster.wait_ready(3)
            assert restarted["last_executed"] < behind
            await wait_status(cluster, 3, lambda s: s["last_executed"] >= behind, 20)
            cluster.kill(2, signal.SIGKILL)
            # Replicas 0, 1 and 3 are exactly a quorum: nothing commits without replica 3.
            check_appends(await append_load(client, 4, 10, "c"), 10)
            after = (await cluster.status(0))["last_executed"]
            await wait_status(cluster, 3, lambda s: s["last_executed"] >= after, 10)


@pytest.mark.trio
async def test_the_primary_killed_a_view_change_and_progress(tmp_path):
    """V1-V3: with the primary of view 0 killed, the clients' retransmissions (N9) start the
    backups' timers, they move to view 1 and requests complete; the old primary, restarted,
    joins the new view."""
    files = generate_cluster(tmp_path, clients=4, bounds=FAST_BOUNDS)
    with trio.fail_after(90), LocalCluster(files) as cluster:
        cluster.start_all()
        await cluster.wait_all_ready()
        async with connect(files.config, files.client_signers(), wait_connected_s=10) as client:
            check_appends(await append_load(client, 4, 10, "a"), 10)
            cluster.kill(0, signal.SIGKILL)
            check_appends(await append_load(client, 4, 10, "b"), 10)
            for replica_id in (1, 2, 3):
                status = await cluster.status(replica_id)
                assert status["view"] >= 1 and status["view_active"], status
                assert status["primary"] != 0
            metrics = await cluster.metrics(1)
            assert "pbft_view_changes_total 0" not in metrics
            cluster.start(0)
            view = (await cluster.status(1))["view"]
            await cluster.wait_ready(0)
            check_appends(await append_load(client, 4, 5, "c"), 5)
            await wait_status(cluster, 0, lambda s: s["view"] >= view and s["view_active"], 20)


@pytest.mark.trio
async def test_all_four_killed_mid_load_lose_no_acknowledged_request(tmp_path):
    """Exactly once and durability: every replica gets SIGKILL while clients are mid-request;
    after restarting from storage, every request a client saw acknowledged is executed once.
    (benchmarks/runtime_crash_all.py runs this 20 times.)"""
    with trio.fail_after(90):
        result = await crash_all_round(tmp_path / "cluster", clients=6, seed=7)
    assert result.acknowledged > 0
    assert result.missing == [] and result.duplicated == [], result


@pytest.mark.trio
async def test_a_request_that_makes_the_application_raise_stops_no_replica(tmp_path):
    """A1 on real processes: every replica that executes the poisoned request gives it the
    same application-error result, logs it and goes on serving; killed (-9) and restarted, the
    replicas replay it from their storage to the same result instead of dying again."""
    from pbft.app import decode_application_error, kv_get, kv_put

    from .test_application_errors import POISON

    files = generate_cluster(tmp_path, clients=1, bounds=FAST_BOUNDS)
    app = ["--app", "tests.test_application_errors:RaisingStore"]
    with trio.fail_after(90), LocalCluster(files, replica_args=app) as cluster:
        cluster.start_all()
        await cluster.wait_all_ready()
        async with connect(files.config, files.client_signers(), wait_connected_s=10) as client:
            assert decode_application_error(await client.submit(POISON)) == "ValueError"
            assert kv_decode_result(await client.submit(kv_put("k", b"1"))) == ("ok", None)
        for replica_id in range(4):
            # (f + 1 results were enough for the client: the others may still be executing.)
            await wait_status(cluster, replica_id, lambda s: s["last_executed"] >= 2, 20)
            assert cluster.running(replica_id)
            assert "the application raised" in files.log_path(replica_id).read_text()
            cluster.kill(replica_id, signal.SIGKILL)
        cluster.start_all()
        await cluster.wait_all_ready()
        async with connect(files.config, files.client_signers(), wait_connected_s=10) as client:
            # R1' after the crash of every replica: the read sees the acknowledged write.
            assert kv_decode_result(await client.query(kv_get("k"))) == ("ok", b"1")
            assert kv_decode_result(await client.submit(kv_put("k", b"2"))) == ("ok", None)
        statuses = [await wait_status(cluster, i, lambda s: s["last_executed"] >= 3, 20)
                    for i in range(4)]
        assert len({s["last_executed"] for s in statuses}) == 1
