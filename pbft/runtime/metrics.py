"""Metrics in the Prometheus text exposition format (version 0.0.4), served over plain HTTP.

`Histogram` accumulates observations into fixed buckets; `MetricsText` builds the exposition
one family at a time; `serve_metrics` answers `GET /metrics` (the text) and `GET /status` (a JSON
object) on a listening socket. The server is for operators on the same host: bind it to
127.0.0.1 (the default everywhere in the runtime); it authenticates nobody and serves only
what the callbacks return. Every connection is bounded: a request line and headers of at most
8 KiB, read within `request_timeout_s`, at most `connections_max` at once.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping

import trio

__all__ = ["Histogram", "MetricsText", "serve_metrics"]

log = logging.getLogger("pbft.runtime.metrics")

#: Seconds; from half a millisecond (a loopback round trip) to ten seconds (a view change).
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
_REQUEST_BYTES_MAX = 8 * 1024


class Histogram:
    """Cumulative-bucket histogram of non-negative observations (seconds by convention)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def quantile(self, q: float) -> float:
        """An estimate of the q-quantile: the upper bound of the bucket holding it (NaN if
        empty, the largest bound if it falls in +Inf)."""
        if not self.count:
            return math.nan
        rank = q * self.count
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return self.bounds[min(index, len(self.bounds) - 1)]
        return self.bounds[-1]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, object]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


class MetricsText:
    """Builds an exposition: `family(name, type, help)` then `sample(...)` lines for it."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, object] | None = None) -> None:
        self._lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def metric(
        self,
        name: str,
        kind: str,
        help_text: str,
        value: float,
        labels: Mapping[str, object] | None = None,
    ) -> None:
        """One family with one sample."""
        self.family(name, kind, help_text)
        self.sample(name, value, labels)

    def labelled(
        self, name: str, kind: str, help_text: str, label: str, values: Mapping[object, float]
    ) -> None:
        """One family with a sample per `values` entry, labelled `label`."""
        self.family(name, kind, help_text)
        for key in sorted(values, key=str):
            self.sample(name, values[key], {label: key})

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        self.family(name, "histogram", help_text)
        cumulative = 0
        for bound, count in zip((*histogram.bounds, math.inf), histogram.counts):
            cumulative += count
            self.sample(f"{name}_bucket", cumulative, {"le": _number(bound)})
        self.sample(f"{name}_sum", histogram.sum)
        self.sample(f"{name}_count", histogram.count)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


async def serve_metrics(
    render_metrics: Callable[[], str],
    render_status: Callable[[], dict],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    connections_max: int = 16,
    request_timeout_s: float = 5.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer HTTP GETs on (host, port) until cancelled; reports the bound port to
    `nursery.start`. `/metrics` is `render_metrics()`, `/status` is `render_status()` as JSON;
    anything else is a 404, a bad request a 400. Raises OSError if it cannot listen."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    limiter = trio.CapacityLimiter(connections_max)

    async def handle(stream: trio.SocketStream) -> None:
        if limiter.available_tokens == 0:
            await stream.aclose()
            return
        async with limiter:
            try:
                with trio.move_on_after(request_timeout_s):
                    await _answer(stream, render_metrics, render_status)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        bound = listeners[0].socket.getsockname()[1]
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handle, nursery)
        task_status.started(bound)


async def _accept_loop(listener, handle, nursery: trio.Nursery) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:  # out of descriptors: try again shortly
                log.warning("metrics accept failed: %s", e, extra={"reason": "accept_failed"})
                await trio.sleep(0.1)
                continue
            nursery.start_soon(handle, stream)


async def _answer(stream: trio.SocketStream, render_metrics, render_status) -> None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > _REQUEST_BYTES_MAX:
            await _respond(stream, 431, "text/plain", b"request header too large\n")
            return
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        data += chunk
    request_line = data.split(b"\n", 1)[0].strip().split()
    if len(request_line) < 2 or request_line[0] not in (b"GET", b"HEAD"):
        await _respond(stream, 400, "text/plain", b"only GET is served\n")
        return
    path = request_line[1].split(b"?", 1)[0]
    if path == b"/metrics":
        body = render_metrics().encode()
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    elif path == b"/status":
        body = (json.dumps(render_status(), sort_keys=True) + "\n").encode()
        content_type = "application/json"
    else:
        await _respond(stream, 404, "text/plain", b"try /metrics or /status\n")
        return
    await _respond(stream, 200, content_type, b"" if request_line[0] == b"HEAD" else body)


async def _respond(stream: trio.SocketStream, code: int, content_type: str, body: bytes) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 431: "Too Large"}[code]
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head + body)


async def fetch(host: str, port: int, path: str, timeout_s: float = 2.0) -> bytes:
    """GET `path` from a metrics server and return the body; raises OSError (unreachable),
    trio.TooSlowError, or ValueError (not a 200 answer)."""
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        raise ValueError(f"http://{host}:{port}{path} answered {head[:80]!r}")
    return body
