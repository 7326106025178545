"""The `pbft` command (issue 5, item 5): keygen writes a loadable configuration and private
key files; `pbft replica` refuses wrong keys and corrupt storage with a clear message; `pbft
cluster` runs four replica processes and stops them all on SIGINT/SIGTERM; `pbft status` shows
each replica's view, progress and health; `pbft bench` ends with its JSON line. Commands run as
real subprocesses (`python -m pbft.runtime.cli`) with timeouts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from benchmarks.runtime_crash_all import FAST_BOUNDS
from pbft import config as config_module
from pbft.ed25519 import read_key_file
from pbft.runtime.cli import main
from pbft.runtime.cluster import LocalCluster, generate_cluster

from .processes import alive

PBFT = [sys.executable, "-m", "pbft.runtime.cli"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PBFT, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_keygen_writes_a_configuration_and_private_keys(tmp_path, capsys):
    out = tmp_path / "cluster"
    assert main(["keygen", "--replicas", "4", "--clients", "3", "--out", str(out),
                 "--base-port", "17000", "--set", "request_timeout_ms=1500"]) == 0  # fmt: skip
    config = config_module.load(out / "cluster.toml")
    assert config.n == 4 and config.request_timeout_ms == 1500
    assert [r.port for r in config.replicas] == [17000, 17001, 17002, 17003]
    for i in range(4):
        key = out / "keys" / f"replica-{i}.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert read_key_file(key).public_key == config.public_key(i)
    clients = sorted((out / "keys").glob("client-*.key"))
    assert len(clients) == 3 and all(p.stat().st_mode & 0o777 == 0o600 for p in clients)
    assert "n = 4, f = 1" in capsys.readouterr().out
    assert main(["keygen", "--out", str(out)]) == 2, "an existing cluster is never overwritten"


def test_keygen_refuses_an_invalid_configuration(tmp_path, capsys):
    assert main(["keygen", "--replicas", "3", "--out", str(tmp_path / "x")]) == 2
    assert "3f + 1" in capsys.readouterr().err
    assert main(["keygen", "--out", str(tmp_path / "y"), "--set", "no_such_bound=1"]) == 2


def test_keygen_and_cluster_refuse_options_that_contradict_each_other(tmp_path, capsys):
    """Usage mistakes, refused before anything is written or started: ports free on this
    machine for replicas on other hosts; a --dir whose cluster has another size; an --app
    that names something not callable."""
    out = tmp_path / "k"
    assert main(["keygen", "--out", str(out), "--free-ports", "--hosts", "a,b,c,d"]) == 2
    assert "--free-ports finds ports free on this machine" in capsys.readouterr().err
    assert not out.exists()
    files = generate_cluster(tmp_path / "four", clients=1)
    assert main(["cluster", "--dir", str(files.directory), "--replicas", "7"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pbft cluster: --dir {files.directory} holds a cluster of 4 replicas, not 7")
    assert main(["cluster", "--app", "pbft.config:METRICS_PORT_OFFSET"]) == 2
    assert "--app 'pbft.config:METRICS_PORT_OFFSET': METRICS_PORT_OFFSET is not callable" in (
        capsys.readouterr().err)  # fmt: skip


def test_a_replica_refuses_a_key_that_is_not_its_own(tmp_path):
    files = generate_cluster(tmp_path, clients=1)
    result = run("replica", "--config", str(files.config_path), "--id", "0",
                 "--key", str(files.replica_keys[1]), "--data", str(tmp_path / "d"))  # fmt: skip
    assert result.returncode == 2 and "replica 0 is configured with" in result.stderr


def test_a_replica_with_corrupt_storage_refuses_to_start(tmp_path):
    """Corruption in the middle of the records: the replica exits with a message that says so,
    rather than run on state it cannot trust."""
    files = generate_cluster(tmp_path, clients=1, bounds=FAST_BOUNDS)
    with LocalCluster(files) as cluster:
        cluster.start_all()
        for i in range(4):
            cluster.wait_ready_blocking(i)
        import trio

        from pbft.app import kv_put
        from pbft.runtime.client import connect

        async def load():
            async with connect(files.config, files.client_signers(), wait_connected_s=10) as c:
                for i in range(20):
                    await c.submit(kv_put("k", b"%d" % i))

        trio.run(load)
        cluster.stop_all()
    database = files.data_dir(2) / "replica.sqlite"
    with sqlite3.connect(database) as db:
        [(row,)] = db.execute("SELECT id FROM records ORDER BY id LIMIT 1 OFFSET 1").fetchall()
        db.execute("UPDATE records SET checksum = checksum + 1 WHERE id = ?", (row,))
    result = run("replica", "--config", str(files.config_path), "--id", "2",
                 "--key", str(files.replica_keys[2]), "--data", str(files.data_dir(2)),
                 timeout=30)  # fmt: skip
    assert result.returncode == 1
    [message] = [line for line in result.stderr.splitlines() if line.startswith("pbft replica:")]
    assert f"record {row} " in message and "refuses to start" in message
    assert "Traceback" not in result.stderr, result.stderr


def test_a_second_process_on_a_replica_data_directory_refuses_to_start(tmp_path):
    """Issue 13, item 9: a second `pbft replica` on the data directory of a running one exits
    with a message naming the process that holds it, instead of running (and voting) beside it
    as the same replica."""
    files = generate_cluster(tmp_path, clients=1, bounds=FAST_BOUNDS)
    with LocalCluster(files) as cluster:
        first = cluster.start(0)
        cluster.wait_ready_blocking(0)
        result = run(*cluster.command(0)[3:], timeout=30)
        assert cluster.running(0)
    assert result.returncode == 1
    [message] = [line for line in result.stderr.splitlines() if line.startswith("pbft replica:")]
    assert f"in use by another replica process (pid {first.pid})" in message
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cluster_runs_four_processes_and_stops_them_all(tmp_path, signum):
    work = tmp_path / "work"
    process = subprocess.Popen([*PBFT, "cluster", "--replicas", "4", "--dir", str(work)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any("Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())
        pids = [int(line.split(" pid ")[1].split()[0]) for line in lines if " pid " in line]
        assert len(pids) == 4 and all(alive(pid) for pid in pids)
        status = run("status", "--config", str(work / "cluster.toml"))
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(" ok") == 4 and "4 of 4 replicas healthy" in status.stdout
        process.send_signal(signum)
        assert process.wait(30) == 0
        assert not any(alive(pid) for pid in pids), "every replica process is stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_status_reports_unreachable_replicas_and_a_lost_quorum(tmp_path):
    files = generate_cluster(tmp_path, clients=1)
    with LocalCluster(files) as cluster:
        cluster.start_all()
        for i in range(4):
            cluster.wait_ready_blocking(i)
        cluster.kill(3)
        result = run("status", "--config", str(files.config_path), "--timeout", "1")
        assert result.returncode == 0 and "unreachable" in result.stdout
        cluster.kill(2)
        result = run("status", "--config", str(files.config_path), "--timeout", "1", "--json")
        assert result.returncode == 1
        statuses = json.loads(result.stdout.splitlines()[0])
        assert statuses[0]["view"] == 0 and isinstance(statuses[2], str)


def test_bench_prints_a_table_and_a_json_line(tmp_path):
    result = run("bench", "--duration", "0.5", "--clients", "4", "--dir", str(tmp_path),
                 "--only", "ordered_0_0,read_only_0_4,single_client,unreplicated_0_0",
                 timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["ordered_0_0_requests_per_s"] > 0
    assert summary["latency_ms_p50_single_client"] > 0
    assert summary["read_only_0_4_requests_per_s"] > 0
    assert summary["unreplicated_0_0_requests_per_s"] > 0
    [row] = [line.split() for line in lines if line.startswith("ordered_0_0 ")]
    assert row[1] == "4" and float(row[2].replace(",", "")) > 0, "the table: clients, req/s"
    assert "ordered_0_0" not in result.stderr, "no progress when stderr is not a terminal"
