"""Watching processes a test started (the replicas of a `pbft cluster`): Linux-only, through
/proc, because a process that exited but was not reaped yet must count as gone."""

from __future__ import annotations

import os
import subprocess
import time


def alive(pid: int) -> bool:
    """Whether `pid` runs: it exists and is not a zombie (the cluster command reaps its
    children, so a zombie is a replica that has stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def wait_dead(pids: list[int], timeout_s: float = 20.0) -> bool:
    """Wait until none of `pids` is `alive`; False if some still are after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run_into_closed_pipe(command: list[str], *, timeout_s: float, **popen) -> tuple[int, str]:
    """Run `command` with its stdout a pipe closed before the program starts (`... | head` whose
    reader has gone: every write fails); its exit code and stderr. Killed if it outlives
    `timeout_s`."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    process.stdout.close()
    try:
        stderr = process.stderr.read().decode()
        code = process.wait(timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, stderr
