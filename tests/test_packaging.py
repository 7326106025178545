"""Packaging (issue 16 item 7): `pbft` exports the public names the documents and examples use,
importing it stays pure (no trio: docs/ARCHITECTURE.md), and `pip install .` from a fresh copy
gives the `pbft` command, `py.typed` and packages the examples run against. Method: import the
names; parse the documents' and examples' imports; install into a temporary virtualenv."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pbft
import pbft.runtime

from .test_readme import BLOCKS

ROOT = Path(__file__).resolve().parent.parent
#: Names the documents import from a pure pbft module that `pbft` does not re-export, and why.
NOT_REEXPORTED = {
    ("pbft.config", "load"): "a module function: `pbft.config.load` says what it loads",
}
#: Pure modules that are a public namespace of their own, and why.
OWN_NAMESPACE = {
    "pbft.messages": "the protocol's message types, for Byzantine behaviours and drivers",
}


def test_every_name_in_all_is_importable_and_listed_once():
    for package in (pbft, pbft.runtime):
        assert len(set(package.__all__)) == len(package.__all__), package.__name__
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    assert "StateMachine" in pbft.__all__ and "embedded_cluster" in pbft.runtime.__all__


def test_importing_pbft_imports_no_trio():
    """ARCHITECTURE.md: only pbft.runtime uses trio; `import pbft` must not pull it in (the
    simulator and the tradeapp state machine import pbft)."""
    code = "import sys, pbft; print([m for m in ('trio', 'pbft.runtime') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "[]"


def documented_imports() -> list[tuple[str, str, str]]:
    """(where, module, name) for every `from pbft... import name` in a python block of the
    Markdown documents and in examples/."""
    sources = [(b.name, b.text) for b in BLOCKS if b.kind == "python"]
    examples = sorted(ROOT.glob("examples/*.py"))
    sources += [(str(path.relative_to(ROOT)), path.read_text()) for path in examples]
    found = []
    for where, text in sources:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pbft"):
                found.extend((where, node.module, alias.name) for alias in node.names)
    return found


def test_the_names_documents_and_examples_import_are_public():
    """A name a user is shown is exported: from the pure modules by `pbft.__all__`, from the
    runtime by `pbft.runtime.__all__` or its module's `__all__`."""
    imports = documented_imports()
    assert len(imports) > 20  # the scan found the documents' imports
    problems = []
    for where, module, name in imports:
        if module == "pbft.runtime" or module.startswith("pbft.runtime."):
            exported = getattr(importlib.import_module(module), "__all__", ())
            if name not in exported:
                problems.append(f"{where}: {module}.{name} is not in {module}.__all__")
        elif module == "pbft" or module.startswith("pbft."):
            if module in OWN_NAMESPACE:
                if name.startswith("_") or not hasattr(importlib.import_module(module), name):
                    problems.append(f"{where}: {module}.{name} is not a public name")
            elif name not in pbft.__all__ and (module, name) not in NOT_REEXPORTED:
                problems.append(f"{where}: {module}.{name} is not in pbft.__all__")
    assert not problems, "\n".join(problems)


def copy_checkout(destination: Path) -> Path:
    """What a fresh clone holds: the files git tracks or would track (not ignored), as they
    are in the working tree now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for relative in filter(None, listed):
        source = ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def test_pip_install_gives_the_command_and_the_examples_run_against_it(tmp_path):
    """`pip install .` (dependencies aside: they come from the virtualenv running this test) into
    a new virtualenv; examples then run from a directory holding only examples/, so every pbft,
    tradeapp and simulations import is the installed package's (tests/test_examples.py runs
    every example against the checkout). About 15 s: pip builds the package in isolation."""
    clone = copy_checkout(tmp_path / "clone")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--quiet", str(clone)], capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True)
                .stdout.strip())  # fmt: skip
    assert (site / "pbft" / "py.typed").is_file()
    assert not (site / "examples").exists() and not (site / "tests").exists()
    # The dependencies (trio, msgpack, PyNaCl, ...) from this test's environment, after the
    # installed packages on the path.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    run_dir = tmp_path / "run"
    shutil.copytree(clone / "examples", run_dir / "examples")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"

    def run(*command: str) -> str:
        result = subprocess.run(command, cwd=run_dir, env=env, capture_output=True, text=True,
                                timeout=300, check=False)  # fmt: skip
        assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
        return result.stdout

    where = run("python", "-c", "import pbft, tradeapp, simulations; "
                "print(pbft.__file__, tradeapp.__file__, simulations.__file__)")
    assert all(path.startswith(str(site)) for path in where.split()), where
    assert "keygen" in run("pbft", "--help")
    assert "total 42" in run("python", "-m", "examples.counter_embedded")
    assert "safety and liveness held" in run("python", "-m", "examples.counter_simulated")
