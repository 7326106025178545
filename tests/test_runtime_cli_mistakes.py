"""Issue 16, item 4: mistakes get a clear message and leave nothing behind. Each test runs the
real command as a subprocess (`python -m ...` from the repository root, 127.0.0.1, free ports)
and asserts the message: one line naming what is wrong (the file, the address and which
listener, the replica), an exit code other than 0, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbft.config import METRICS_PORT_OFFSET
from pbft.runtime.cluster import LocalCluster, free_ports, generate_cluster

from .processes import alive, run_into_closed_pipe, wait_dead

ROOT = Path(__file__).resolve().parent.parent
PBFT = [sys.executable, "-m", "pbft.runtime.cli"]
TRADE = [sys.executable, "-m", "tradeapp.cli"]
SIMULATIONS = [sys.executable, "-m", "simulations"]


def run(command: list[str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, check=False)  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess, prefix: str) -> str:
    """The single error line of a failed command (asserting there is exactly one, no
    traceback)."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


@pytest.fixture
def cluster_files(tmp_path):
    return generate_cluster(tmp_path / "c", clients=1)


# ---------------------------------------------------------------------------- wrong paths


@pytest.mark.parametrize("command", ["status", "submit", "query", "replica", "bench"])
def test_a_wrong_config_path_is_one_line_naming_the_file(tmp_path, cluster_files, command):
    missing = tmp_path / "nowhere" / "cluster.toml"
    key = str(cluster_files.client_keys[0])
    args = {
        "status": ["--config", str(missing)],
        "submit": ["--config", str(missing), "--key", key, "get", "k"],
        "query": ["--config", str(missing), "--key", key, "get", "k"],
        "replica": ["--config", str(missing), "--id", "0", "--key", key,
                    "--data", str(tmp_path / "d")],
        "bench": ["--config", str(missing), "--duration", "0.1"],
    }[command]  # fmt: skip
    line = one_line_error(run(PBFT, command, *args), f"pbft {command}: ")
    assert f"--config {missing}: no such file" in line
    assert not (tmp_path / "d").exists()


def test_a_config_that_is_a_directory_or_invalid_is_named(tmp_path):
    line = one_line_error(run(PBFT, "status", "--config", str(tmp_path)), "pbft status: ")
    assert f"--config {tmp_path}: is a directory" in line
    bad = tmp_path / "bad.toml"
    bad.write_text("f = [\n")
    line = one_line_error(run(PBFT, "status", "--config", str(bad)), "pbft status: ")
    assert f"--config {bad}: invalid TOML" in line


@pytest.mark.parametrize("command", ["submit", "replica"])
def test_a_wrong_key_path_is_one_line_naming_the_file(tmp_path, cluster_files, command):
    missing = tmp_path / "no.key"
    config = str(cluster_files.config_path)
    args = ["--config", config, "--key", str(missing)]
    args += ["get", "k"] if command == "submit" else ["--id", "0", "--data", str(tmp_path / "d")]
    line = one_line_error(run(PBFT, command, *args), f"pbft {command}: ")
    assert f"--key {missing}: cannot read key file: No such file or directory" in line


def test_tradeapp_cli_names_a_wrong_config_or_key_file(tmp_path, cluster_files):
    missing = tmp_path / "missing.toml"
    line = one_line_error(run(TRADE, "--config", str(missing), "--key", "k", "report",
                              "rejections"), "tradeapp report: ")  # fmt: skip
    assert f"--config {missing}: no such file" in line
    line = one_line_error(run(TRADE, "--config", str(missing), "digests"), "tradeapp digests: ")
    assert f"--config {missing}: no such file" in line
    line = one_line_error(run(TRADE, "--config", str(cluster_files.config_path), "--key",
                              str(tmp_path / "no.key"), "read", "get.lc", "--lc-id", "L"),
                          "tradeapp read: ")  # fmt: skip
    assert f"--key {tmp_path / 'no.key'}: cannot read key file" in line


REPLAY_FILES = {
    "missing": (None, "cannot read replay file {path}: No such file or directory"),
    "list": ("[1, 2]", "replay file {path}: expected a JSON object with a scenario name"),
    "text": ("not json", "replay file {path} is not JSON"),
    "schedule": ('{"scenario": "s", "seed": 1, "schedule": 5}',
                 "replay file {path}: schedule is not a list of faults"),
    "fault": ('{"scenario": "s", "seed": 1, "schedule": [{"fault": "boom"}]}',
              "replay file {path}: bad schedule: ValueError(\"unknown fault 'boom'\")"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REPLAY_FILES))
def test_simulations_replay_names_a_missing_or_malformed_file(tmp_path, case):
    text, expected = REPLAY_FILES[case]
    path = tmp_path / "replays" / f"{case}.json"
    if text is not None:
        path.parent.mkdir()
        path.write_text(text)
    result = run(SIMULATIONS, "replay", str(path))
    assert result.returncode == 2
    line = one_line_error(result, "python -m simulations replay: ")
    assert expected.format(path=path) in line, line


def test_bench_on_a_cluster_that_is_not_running_names_the_addresses(cluster_files):
    result = run(PBFT, "bench", "--config", str(cluster_files.config_path), "--clients", "1",
                 "--only", "ordered_0_0", "--duration", "0.5",
                 "--connect-timeout", "0.5")  # fmt: skip
    assert result.returncode == 1
    line = one_line_error(result, "pbft bench: not connected to a quorum of 3 replicas")
    info = cluster_files.config.replicas[3]
    assert f"{info.host}:{info.port} (replica 3)" in line


# ---------------------------------------------------------------------------- ports in use


@pytest.mark.parametrize("listener", ["replica", "metrics"])
def test_a_replica_on_a_port_in_use_names_the_address_and_writes_nothing(
    tmp_path, cluster_files, listener
):
    info = cluster_files.config.replicas[0]
    port = info.port if listener == "replica" else info.port + METRICS_PORT_OFFSET
    data, log = tmp_path / "data-0", tmp_path / "replica.log"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run(PBFT, "replica", "--config", str(cluster_files.config_path), "--id", "0",
                     "--key", str(cluster_files.replica_keys[0]), "--data", str(data),
                     "--log-file", str(log))  # fmt: skip
    line = one_line_error(result, "pbft replica: ")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (replica 0's {listener} listener)" in line
    assert not data.exists() and not log.exists(), "nothing is created on disk"


def test_pbft_cluster_on_base_ports_in_use_creates_nothing(tmp_path):
    [port] = free_ports(1, with_offset=METRICS_PORT_OFFSET)
    work = tmp_path / "work"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port + METRICS_PORT_OFFSET))
        holder.listen()
        result = run(PBFT, "cluster", "--base-port", str(port), "--dir", str(work))
    line = one_line_error(result, "pbft cluster: ")
    assert f"127.0.0.1:{port + METRICS_PORT_OFFSET} (replica 0's metrics listener)" in line
    assert "Choose another --base-port" in line
    assert not work.exists()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A running 4-replica cluster, shared by the tests that need one to collide with."""
    files = generate_cluster(tmp_path_factory.mktemp("running"), clients=1)
    with LocalCluster(files) as cluster:
        cluster.start_all()
        cluster.wait_all_ready_blocking()
        yield cluster


def test_a_second_cluster_on_a_running_ones_directory_is_refused(running):
    """The running cluster's replicas answer on the configured ports: the second `pbft
    cluster` must say so and exit, not report them as its own."""
    files = running.files
    result = run(PBFT, "cluster", "--dir", str(files.directory), timeout=60)
    assert all(running.running(i) for i in range(4))
    line = one_line_error(result, "pbft cluster: ")
    assert f"127.0.0.1:{files.config.replicas[0].port} (replica 0's replica listener)" in line
    assert f"Is the cluster of {files.directory} running already?" in line
    assert "running in" not in result.stdout


def test_local_cluster_does_not_take_another_clusters_replica_for_its_own(tmp_path, running):
    """A replica is ready when the process started answers (its /status pid), not whoever
    answers at the address: here the new process cannot listen (the ports are taken) and
    exits, while the other cluster's replica answers at the metrics address."""
    files = running.files
    second = type(files)(tmp_path, files.config_path, files.replica_keys, files.client_keys)
    with LocalCluster(second) as impostor:
        impostor.start(0)
        with pytest.raises(RuntimeError, match="replica 0 exited with 1"):
            impostor.wait_ready_blocking(0, timeout_s=30)
    assert "replica 0's replica listener" in second.log_path(0).read_text()


# ---------------------------------------------------------------------------- pbft cluster


def _start_cluster(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, list[str]]:
    process = subprocess.Popen([*PBFT, "cluster", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=env)  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any("Ctrl-C" in line for line in lines):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise AssertionError("".join(lines) + process.stderr.read())
        lines.append(process.stdout.readline())
    return process, lines


def _pids(lines: list[str]) -> list[int]:
    return [int(line.split(" pid ")[1].split()[0]) for line in lines if " pid " in line]


def _cleanup(process: subprocess.Popen, pids: list[int]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_pbft_cluster_exits_and_stops_the_rest_when_a_replica_dies(tmp_path):
    process, lines = _start_cluster("--dir", str(tmp_path / "w"))
    pids = _pids(lines)
    try:
        assert len(pids) == 4
        os.kill(pids[2], signal.SIGKILL)
        assert process.wait(30) == 1
        stderr = process.stderr.read()
        assert f"replica 2 exited with -9 (its log: {tmp_path / 'w' / 'replica-2.log'}); " \
               "stopping the others" in stderr  # fmt: skip
        assert "Traceback" not in stderr
        assert wait_dead(pids), "every other replica is stopped"
    finally:
        _cleanup(process, pids)


def test_sighup_stops_the_cluster_and_its_replicas(tmp_path):
    process, lines = _start_cluster("--dir", str(tmp_path / "w"))
    pids = _pids(lines)
    try:
        process.send_signal(signal.SIGHUP)
        assert process.wait(30) == 0
        assert "SIGHUP received" in process.stdout.read()
        assert wait_dead(pids), "no replica is left running as an orphan"
    finally:
        _cleanup(process, pids)


def test_replicas_of_a_killed_cluster_command_are_not_orphaned(tmp_path):
    """Even SIGKILL, which the command cannot handle: each replica asked Linux for SIGTERM
    when its parent dies (PR_SET_PDEATHSIG; these tests run on Linux, as tests/processes.py
    reads /proc)."""
    process, lines = _start_cluster("--dir", str(tmp_path / "w"))
    pids = _pids(lines)
    try:
        process.kill()
        process.wait(10)
        assert wait_dead(pids), "the replicas stop when the cluster command dies"
    finally:
        _cleanup(process, pids)


@pytest.mark.parametrize("keep", [False, True])
def test_ctrl_c_removes_the_temporary_directory_or_says_where_it_is(tmp_path, keep):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process, lines = _start_cluster(*(["--keep"] if keep else []), env=env)
    pids = _pids(lines)
    try:
        [directory] = [Path(line.split(" running in ")[1].strip()) for line in lines
                       if " running in " in line]  # fmt: skip
        assert directory.parent == tmp_path and (directory / "keys").is_dir()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        out = process.stdout.read()
        if keep:
            assert f"private keys included, stay in {directory}" in out
            assert (directory / "keys" / "client-0.key").exists()
        else:
            assert f"removed {directory} (its private keys with it" in out
            assert not directory.exists()
        assert wait_dead(pids)
    finally:
        _cleanup(process, pids)


def test_sighup_stops_a_replica_cleanly(tmp_path):
    """SIGHUP (a closed terminal) is a request to stop, like SIGTERM: exit code 0, and the
    replica says so in its log."""
    files = generate_cluster(tmp_path, clients=1)
    with LocalCluster(files) as cluster:
        cluster.start(0)
        cluster.wait_ready_blocking(0)
        assert cluster.kill(0, signal.SIGHUP, timeout_s=30) == 0
    assert any(r.get("reason") == "signal" and "SIGHUP" in r["message"]
               for r in cluster.log_records(0))  # fmt: skip


# ---------------------------------------------------------------------------- option values


NOT_ALLOWED = {
    "app": (
        [*PBFT, "cluster", "--app", "nosuch.module:factory"],
        "pbft cluster: --app 'nosuch.module:factory': No module named 'nosuch' (expected kv, "
        "bench or module:callable)"),
    "log level": (
        [*PBFT, "replica", "--config", "c", "--id", "0", "--key", "k", "--data", "d",
         "--log-level", "LOUD"],
        "invalid choice: 'LOUD' (choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')"),
    "query verb": (
        [*PBFT, "query", "--config", "c", "--key", "k", "put", "a", "b"],
        "invalid choice: 'put' (choose from 'get', 'raw')"),
    "role": (
        [*TRADE, "--config", "c", "--key", "k", "submit", "party.admit", "--participant-id", "X",
         "--role", "KING", "--legal-name", "x", "--country", "CN", "--tax-id", "t",
         "--public-key", "00", "--place", "CN"],
        "invalid choice: 'KING' (choose from 'FX_ADMIN', 'CUSTOMS', 'TAX', 'BANK', 'CARRIER', "
        "'TRADER')"),
    "wait": (
        [*PBFT, "status", "--config", str(ROOT / "pyproject.toml"), "--wait", "-1"],
        "pbft status: --wait must be at least 0 seconds"),
    "call timeout": (
        [*PBFT, "submit", "--config", "c", "--key", "k", "--timeout", "0", "get", "a"],
        "argument --timeout: '0' is not a positive number of seconds"),
    "connect timeout": (
        [*TRADE, "--config", "c", "--key", "k", "--connect-timeout", "-1", "report", "rejections"],
        "argument --connect-timeout: '-1' is not a positive number of seconds"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(NOT_ALLOWED))
def test_option_values_that_are_not_allowed_list_the_allowed_ones(case):
    command, expected = NOT_ALLOWED[case]
    result = run(command)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- broken pipes


@pytest.mark.parametrize("program", ["pbft", "tradeapp"])
def test_json_into_a_closed_pipe_prints_no_traceback(cluster_files, program):
    """`--json | head`: the reader is gone before the command writes (no replica runs, so the
    command first waits for its timeouts)."""
    config = str(cluster_files.config_path)
    command = ([*PBFT, "status", "--json", "--timeout", "0.2", "--config", config]
               if program == "pbft" else
               [*TRADE, "--json", "--timeout", "0.5", "--config", config, "digests"])  # fmt: skip
    code, stderr = run_into_closed_pipe(command, timeout_s=60, cwd=ROOT)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert code != 0


def test_the_app_is_looked_up_as_the_replicas_will_from_the_working_directory(monkeypatch,
                                                                               tmp_path):  # fmt: skip
    """`pbft cluster --app examples.counter:Counter` from a checkout: the replicas (`python -m`)
    import from the working directory, which an installed `pbft` command does not have on its
    path; the check before starting must find the factory as they will, and leave the path as
    it was."""
    from pbft.runtime.cli import app_factory

    path = [entry for entry in sys.path if entry not in ("", str(ROOT))]
    monkeypatch.setattr(sys, "path", path)
    for name in [name for name in sys.modules if name.split(".")[0] == "examples"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.chdir(ROOT)
    assert app_factory("examples.counter:Counter", search_cwd=True).__name__ == "Counter"
    assert sys.path == path
    for name in [name for name in sys.modules if name.split(".")[0] == "examples"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="No module named 'examples'"):
        app_factory("examples.counter:Counter", search_cwd=True)
