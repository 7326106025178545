"""Hosts for the multi-host suite: Linux network namespaces joined by a bridge, and faults.

`Network` builds one namespace per host (its own network stack: interfaces, routes, TCP
timers), each with one interface `eth0` on 10.213.0.0/24, plugged by a veth pair into a bridge
that lives in a namespace of its own. The root namespace gets no address of that network, so
nothing a test does reaches the hosts except through the bridge: the replicas and the client
host (where `pbft status` and the load generator run) see each other only as separate machines
would.

Faults, all silent (no RST, no ICMP, no local error: what a cut cable or a dead switch port
does, the case where TCP sits in retransmission back-off):

- `block_out(h)` / `block_in(h)`: drop everything host h sends / receives (a one-way
  partition), by a `tc tbf` qdisc of 8 bit/s with a 64-byte bucket on h's `eth0` (egress: what h
  sends) or on h's bridge port (egress towards h: what h receives). No packet of a TCP segment
  fits; netem and drop actions do not exist on this kernel, tbf does.
- `cut(h)`: both; `heal(h)` removes every fault of h.
- `link_down(h)` / `link_up(h)`: h's bridge port down (h sees no carrier), for flapping.
- `rate_limit(h, rate)`: a tbf at `rate` on h's `eth0`.

`python -m tests.netns load --config FILE --keys DIR --clients N --out FILE` is the load
generator: N closed-loop clients (KeyValueStore puts) writing one JSON line per completed
request (`{"t": wall time, "latency": seconds, "client": i}`) or failure (`{"failed": ...}`)
until SIGTERM. The suite runs it in the client host's namespace.

`available()` says whether this machine can do all this (root, `ip netns`, veth, bridge, tbf)
and why not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

SUBNET = "10.213.0"
#: The client host's address; replica i's is SUBNET.(10 + i).
CLIENT_ADDRESS = f"{SUBNET}.100"
#: A silent blackhole: 8 bit/s, a bucket smaller than any TCP segment with headers and options.
BLACKHOLE = ["tbf", "rate", "8bit", "burst", "64", "limit", "64"]


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)  # fmt: skip


def available() -> str | None:
    """None if this machine can build a `Network`, else why not (one line)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "the ip and tc commands (iproute2) are missing"
    name = f"pbftprobe-{uuid.uuid4().hex[:8]}"
    try:
        step = "ip netns add"
        run_ip("netns", "add", name)
        step = "a bridge"
        run_ip("-n", name, "link", "add", "br0", "type", "bridge")
        step = "a veth pair"
        run_ip("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "q0")
        step = "tc tbf"
        subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "p0", "root",
                        *BLACKHOLE], capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return f"cannot create network namespaces here ({step} failed: {detail.strip()})"
    finally:
        run_ip("netns", "del", name, check=False)
    return None


class Network:
    """`hosts` replica hosts (replica i on `address(i)`) and a client host, on one bridge.

    Use as a context manager: leaving deletes every namespace (which kills nothing: stop the
    processes first). Names carry a random tag so that concurrent runs do not collide."""

    def __init__(self, hosts: int = 4) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.hosts = hosts
        self.bridge = f"pbft-{self.tag}-br"
        self.namespaces: list[str] = []

    def namespace(self, host: int | str) -> str:
        """The namespace of replica host `host`, or of the client host ("client")."""
        return f"pbft-{self.tag}-{'c' if host == 'client' else f'h{host}'}"

    @staticmethod
    def address(host: int | str) -> str:
        return CLIENT_ADDRESS if host == "client" else f"{SUBNET}.{10 + int(host)}"

    @staticmethod
    def port_name(host: int | str) -> str:
        return "pc" if host == "client" else f"p{host}"

    def __enter__(self) -> Network:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _create(self) -> None:
        run_ip("netns", "add", self.bridge)
        self.namespaces.append(self.bridge)
        run_ip("-n", self.bridge, "link", "set", "lo", "up")
        run_ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        run_ip("-n", self.bridge, "link", "set", "br0", "up")
        for host in [*range(self.hosts), "client"]:
            name = self.namespace(host)
            run_ip("netns", "add", name)
            self.namespaces.append(name)
            run_ip("-n", name, "link", "set", "lo", "up")
            port = self.port_name(host)
            run_ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                   "netns", name)  # fmt: skip
            run_ip("-n", self.bridge, "link", "set", port, "master", "br0")
            run_ip("-n", self.bridge, "link", "set", port, "up")
            run_ip("-n", name, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            run_ip("-n", name, "link", "set", "eth0", "up")

    def close(self) -> None:
        for name in reversed(self.namespaces):
            run_ip("netns", "del", name, check=False)
        self.namespaces.clear()

    def exec_prefix(self, host: int | str) -> list[str]:
        """A command prefix running a program on `host` (ip netns exec execs it: signals sent
        to the process reach the program)."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _tc(self, namespace: str, *args: str, check: bool = True) -> None:
        subprocess.run(["ip", "netns", "exec", namespace, "tc", *args], capture_output=True,
                       text=True, check=check, timeout=30)  # fmt: skip

    # ------------------------------------------------------------------ faults

    def block_out(self, host: int) -> None:
        """Drop everything `host` sends (silently)."""
        self._tc(self.namespace(host), "qdisc", "replace", "dev", "eth0", "root", *BLACKHOLE)

    def block_in(self, host: int) -> None:
        """Drop everything sent to `host` (silently): its bridge port's egress."""
        self._tc(self.bridge, "qdisc", "replace", "dev", self.port_name(host), "root",
                 *BLACKHOLE)  # fmt: skip

    def cut(self, host: int) -> None:
        self.block_out(host)
        self.block_in(host)

    def heal(self, host: int) -> None:
        """Remove every fault of `host`: qdiscs on both ends of its link, and the link up."""
        self._tc(self.namespace(host), "qdisc", "del", "dev", "eth0", "root", check=False)
        self._tc(self.bridge, "qdisc", "del", "dev", self.port_name(host), "root", check=False)
        self.link_up(host)

    def link_down(self, host: int) -> None:
        run_ip("-n", self.bridge, "link", "set", self.port_name(host), "down")

    def link_up(self, host: int) -> None:
        run_ip("-n", self.bridge, "link", "set", self.port_name(host), "up")

    def rate_limit(self, host: int | str, rate: str = "2mbit") -> None:
        """`host` sends at most `rate` (a token bucket of 32 kbit, packets queued up to 100
        ms): a slow link, not a lossy one."""
        self._tc(self.namespace(host), "qdisc", "replace", "dev", "eth0", "root", "tbf",
                 "rate", rate, "burst", "32kbit", "latency", "100ms")  # fmt: skip


# ---------------------------------------------------------------------- the load generator


def _load(args: argparse.Namespace) -> int:
    import msgpack
    import trio

    from pbft import config as config_module
    from pbft.ed25519 import read_key_file
    from pbft.runtime.client import ClientError, connect

    config = config_module.load(args.config)
    keys = sorted(Path(args.keys).glob("client-*.key"), key=lambda p: int(p.stem.split("-")[1]))
    signers = [read_key_file(path) for path in keys[: args.clients]]
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)

    def record(entry: dict) -> None:
        out.write(json.dumps(entry) + "\n")

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with connect(config, signers, timeout_s=args.timeout,
                               wait_connected_s=60) as client:  # fmt: skip
                record({"connected": time.time()})
                async with trio.open_nursery() as nursery:
                    async def worker(index: int) -> None:
                        sequence = 0
                        while True:
                            sequence += 1
                            operation = msgpack.packb(["put", f"c{index}", b"%d" % sequence])
                            started = time.time()
                            try:
                                await client.submit(operation)
                            except (ClientError, trio.TooSlowError) as e:
                                record({"failed": time.time(), "client": index, "error": str(e)})
                                continue
                            done = time.time()
                            record({"t": done, "latency": done - started, "client": index})

                    for index in range(len(signers)):
                        nursery.start_soon(worker, index)
                    async for _ in signals:
                        break
                    nursery.cancel_scope.cancel()

    trio.run(main)
    record({"stopped": time.time()})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netns")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="closed-loop clients until SIGTERM")
    load.add_argument("--config", required=True)
    load.add_argument("--keys", required=True)
    load.add_argument("--clients", type=int, default=2)
    load.add_argument("--timeout", type=float, default=120.0)
    load.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return _load(args)


if __name__ == "__main__":
    sys.exit(main())
