"""docs/ARCHITECTURE.md, allowed imports: walk the AST of every module in pbft, tradeapp and
simulations."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pbft", "tradeapp", "simulations")

#: I/O, clocks, randomness and concurrency: the core receives all of these as inputs.
CORE_BANNED = frozenset(
    {
        "trio", "socket", "time", "random", "os", "threading", "asyncio", "select", "selectors",
        "subprocess", "nacl", "msgpack", "datetime", "secrets", "uuid", "multiprocessing",
        "concurrent", "signal", "ssl", "pathlib", "shutil", "tempfile",
    }
)  # fmt: skip
#: The only pbft modules the core may use (msgpack only through pbft.codec).
CORE_ALLOWED_PBFT = (
    "pbft.messages", "pbft.config", "pbft.app", "pbft.crypto", "pbft.codec", "pbft.core",
)  # fmt: skip
#: The tradeapp state machine is replicated: no clock, no randomness, no environment, no runtime.
TRADEAPP_BANNED = (
    "trio", "pbft.runtime", "time", "random", "datetime", "secrets", "uuid", "os", "zoneinfo",
)  # fmt: skip
STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True, slots=True)
class Import:
    """One imported name, absolute (`from .log import X` in pbft.core.replica: pbft.core.log.X)."""

    name: str
    line: int


def _is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> str:
    """pbft/core/log.py -> pbft.core.log; pbft/core/__init__.py -> pbft.core."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, *, is_package: bool = False) -> list[Import]:
    """Every import in `source`, at any depth (functions, `if TYPE_CHECKING`, try blocks),
    including `__import__("x")` and `importlib.import_module("x")` with a literal name."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(package, node.module, node.level, module)
            for alias in node.names:
                # `from pbft import runtime` imports pbft.runtime; `from x import Name` is
                # checked as x.Name, which any rule on x also covers.
                name = base if alias.name == "*" else f"{base}.{alias.name}"
                found.append(Import(name, node.lineno))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if called in ("__import__", "import_module") and isinstance(first, ast.Constant):
                if isinstance(first.value, str) and not first.value.startswith("."):
                    found.append(Import(first.value, node.lineno))
    return found


def _resolve_from(package: str, target: str | None, level: int, module: str) -> str:
    if level == 0:
        assert target is not None
        return target
    parts = package.split(".") if package else []
    if level - 1 > len(parts) - 1:
        raise ValueError(f"{module}: relative import beyond the top-level package")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """The architecture rules `module` (with this source) breaks, one message each."""
    problems: list[str] = []

    def report(item: Import, rule: str) -> None:
        problems.append(f"{module}:{item.line}: imports {item.name}: {rule}")

    in_core = _is_within(module, "pbft.core")
    in_runtime = _is_within(module, "pbft.runtime")
    in_pbft = _is_within(module, "pbft")
    in_simulations = _is_within(module, "simulations")
    in_tradeapp = _is_within(module, "tradeapp")
    # tradeapp/client*.py and tradeapp/cli*.py are the front end; the rest is the state machine.
    tradeapp_front = in_tradeapp and module.partition(".")[2].startswith("cli")
    for item in imports_of(module, source, is_package=is_package):
        top = item.name.partition(".")[0]
        if in_core:
            if top in CORE_BANNED:
                report(item, "pbft.core is pure: no I/O, clock, randomness, threads, raw msgpack")
            elif top == "pbft":
                if not any(_is_within(item.name, allowed) for allowed in CORE_ALLOWED_PBFT):
                    report(item, f"pbft.core may only use {', '.join(CORE_ALLOWED_PBFT)}")
            elif top not in STDLIB:
                report(item, "pbft.core may only use the standard library and pbft")
        if in_pbft and not in_runtime:
            if _is_within(item.name, "pbft.runtime"):
                report(item, "nothing in pbft outside pbft.runtime imports pbft.runtime")
            if top == "trio":
                report(item, "pbft.runtime is the only trio user")
        if in_simulations:
            if top == "trio" or _is_within(item.name, "pbft.runtime"):
                report(item, "simulations never use trio or pbft.runtime")
            if item.name.startswith(("tradeapp.client", "tradeapp.cli")):
                report(item, "simulations use the tradeapp state machine, not its client or CLI")
        if in_tradeapp and not tradeapp_front:
            if any(_is_within(item.name, banned) for banned in TRADEAPP_BANNED):
                report(item, "the tradeapp state machine never reads a clock or uses the runtime")
            if item.name.startswith(("tradeapp.client", "tradeapp.cli")):
                report(item, "the tradeapp state machine never imports its client or CLI")
    return problems


def _source_files() -> list[Path]:
    files: list[Path] = []
    for package in PACKAGES:
        files.extend(sorted((ROOT / package).rglob("*.py")))
    return files


def _check_tree() -> tuple[list[str], set[Path]]:
    problems: list[str] = []
    visited: set[Path] = set()
    for path in _source_files():
        module = module_name(path)
        source = path.read_text(encoding="utf-8")
        problems.extend(violations(module, source, is_package=path.name == "__init__.py"))
        visited.add(path)
    return problems, visited


def test_the_source_tree_respects_the_allowed_imports():
    problems, visited = _check_tree()
    assert not problems, "architecture violations:\n" + "\n".join(problems)
    assert ROOT / "pbft" / "config.py" in visited and ROOT / "pbft" / "app.py" in visited


def test_the_walk_visits_the_core():
    core_files = set((ROOT / "pbft" / "core").rglob("*.py"))
    assert core_files, "pbft/core has no modules"
    _, visited = _check_tree()
    assert core_files <= visited


# --- The checker checks something: synthetic modules with known violations ---------------------


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("pbft.core.replica", "import trio\n"),
        ("pbft.core.replica", "import os.path\n"),
        ("pbft.core.replica", "from time import monotonic\n"),
        ("pbft.core.replica", "import msgpack\n"),
        ("pbft.core.replica", "import nacl.signing\n"),
        ("pbft.core.replica", "def later():\n    import random\n    return random.random()\n"),
        ("pbft.core.replica", "from ..runtime import node\n"),
        ("pbft.core.replica", "from .. import runtime\n"),
        ("pbft.core.replica", "from ..ed25519 import Ed25519Verifier\n"),
        ("pbft.core.replica", "import hypothesis\n"),
        ("pbft.core.replica", "trio = __import__('trio')\n"),
        ("pbft.core.replica", "import importlib\nt = importlib.import_module('socket')\n"),
        ("pbft.storage", "from pbft.runtime.node import ReplicaNode\n"),
        ("pbft.codec", "import trio\n"),
        ("simulations.loop", "import trio\n"),
        ("simulations.loop", "from pbft import runtime\n"),
        ("simulations.loop", "from tradeapp.client import TradeClient\n"),
        ("tradeapp.machine", "import time\n"),
        ("tradeapp.machine", "from datetime import datetime\n"),
        ("tradeapp.machine", "from random import Random\n"),
        ("tradeapp.machine", "from pbft.runtime import client\n"),
        ("tradeapp.transitions", "from .client import TradeClient\n"),
    ],
)
def test_a_banned_import_is_reported(module, source):
    assert violations(module, source), f"{module}: {source!r} passed the checker"


@pytest.mark.parametrize(
    ("module", "source", "is_package"),
    [
        ("pbft.core.replica", "from ..messages import Prepare\nfrom . import log\n", False),
        ("pbft.core.replica", "from pbft.codec import encode\nimport heapq, hashlib\n", False),
        ("pbft.core", "from .replica import Replica\n", True),
        ("pbft.core.replica", "from typing import TYPE_CHECKING\nimport dataclasses\n", False),
        ("pbft.codec", "import msgpack\nfrom .messages import Prepare\n", False),
        ("pbft.ed25519", "import nacl.signing\n", False),
        ("pbft.runtime.node", "import trio\nfrom ..core import Replica\n", False),
        ("simulations.loop", "import random\nimport heapq\nfrom pbft.core import Replica\n", False),
        ("tradeapp.machine", "import msgpack\nfrom pbft.app import StateMachine\n", False),
        ("tradeapp.client", "import trio\nfrom pbft.runtime import client\n", False),
        ("tradeapp.cli", "import time\nfrom pbft.runtime import client\n", False),
    ],
)
def test_an_allowed_import_passes(module, source, is_package):
    assert violations(module, source, is_package=is_package) == []


def test_relative_imports_resolve_to_absolute_names():
    names = [i.name for i in imports_of("pbft.core.replica", "from ..messages import Prepare\n")]
    assert names == ["pbft.messages.Prepare"]
    names = [i.name for i in imports_of("pbft.core", "from . import log\n", is_package=True)]
    assert names == ["pbft.core.log"]
    names = [i.name for i in imports_of("pbft.core.view.change", "from ... import codec\n")]
    assert names == ["pbft.codec"]
