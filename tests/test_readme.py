"""Every code block of the repository's Markdown runs as written (issue 16: snippets that fail
when copied). Method: find the fenced blocks of every Markdown file; run each python block as a
script and each shell block with bash -e, both in a scratch directory laid out like a checkout
(the repository's top-level entries and `.venv` linked in), each in a process of its own.

Two markers, on the line right above a block:
- `<!-- example: PATH -->`: the block is the file PATH verbatim (tests/test_examples.py runs
  it). `UPDATE_README=1 pytest tests/test_readme.py` rewrites such blocks from their files.
- `<!-- not run by tests/test_readme.py: REASON -->`: the block is not run (it needs several
  hosts, runs for minutes, rewrites checked-in files); the reason must be given.
Blocks in any other language (text, toml, diagrams) are not code and are left alone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = frozenset({".git", ".venv", "build", "dist", "replays", "__pycache__"})
PYTHON_LANGUAGES = frozenset({"python", "py"})
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console"})
#: An opening fence: its backticks and the info string's first word, the language.
FENCE = re.compile(r"^(```+)\s*([^\s`]*)[^`]*$")
EXAMPLE_MARKER = re.compile(r"^<!-- example: (\S+) -->$")
SKIP_MARKER = re.compile(r"^<!-- not run by tests/test_readme\.py:(.*)-->$")
#: Any marker this test reads starts so; a misspelt one must not silently let a block run.
MARKER_START = ("<!-- example", "<!-- not run")
#: Seconds a block may take on a loaded 2-core machine (the slowest runs 4 replica processes).
BLOCK_TIMEOUT_S = 180


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    example: str | None = None
    skip_reason: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        if self.language in PYTHON_LANGUAGES:
            return "python"
        if self.language in SHELL_LANGUAGES:
            return "shell"
        return "text"


class MarkdownError(ValueError):
    """A fence left open, or a marker this test cannot read."""


def parse_blocks(text: str, path: Path) -> list[Block]:
    """The fenced blocks of Markdown `text` (top-level fences only), with their markers.
    Raises MarkdownError for an unclosed fence, a marker that matches neither form, or an
    opt-out without a reason."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, language = opening.groups()
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise MarkdownError(f"{path}:{index + 1}: the fence is never closed")
        example = skip_reason = None
        above = lines[index - 1].strip() if index > 0 else ""
        if above.startswith(MARKER_START):
            if (match := EXAMPLE_MARKER.match(above)) is not None:
                example = match.group(1)
            elif (match := SKIP_MARKER.match(above)) is not None:
                skip_reason = match.group(1).strip()
                if not skip_reason:
                    raise MarkdownError(f"{path}:{index}: a block that is not run needs a reason")
            else:
                raise MarkdownError(f"{path}:{index}: unreadable marker {above!r}")
        body = "\n".join(lines[index + 1 : end])
        blocks.append(Block(path, index + 1, language.lower(), body, example, skip_reason))
        index = end + 1
    return blocks


def markdown_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*.md")):
        parts = path.relative_to(ROOT).parts
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
            continue
        files.append(path)
    return files


def all_blocks() -> list[Block]:
    return [b for path in markdown_files() for b in parse_blocks(path.read_text(), path)]


BLOCKS = all_blocks()
RUN = [b for b in BLOCKS if b.kind != "text" and b.example is None and b.skip_reason is None]
EXAMPLES = [b for b in BLOCKS if b.example is not None]


def checkout_entries() -> set[str]:
    """The repository's top-level entries a fresh clone has (what git tracks), not what runs
    of these snippets left in a working copy (`cluster/`, `data0/`)."""
    listed = subprocess.run(["git", "ls-files", "--cached"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {line.split("/")[0] for line in listed.splitlines() if not line.startswith(".")}


def scratch_checkout(directory: Path) -> Path:
    """`directory` laid out like a checkout after `make test`: the repository's top-level
    entries and `.venv` (the virtualenv running this test) linked in, so that `.venv/bin/pbft`,
    `examples/...` and `python -m simulations` work, and what a block writes stays here."""
    venv = Path(sys.prefix)
    assert (venv / "bin" / "pbft").exists(), (
        f"run the tests from the project's virtualenv (make test): no pbft command in {venv}"
    )
    for name in checkout_entries():
        (directory / name).symlink_to(ROOT / name)
    (directory / ".venv").symlink_to(venv)
    return directory


def run_block(block: Block, directory: Path) -> subprocess.CompletedProcess:
    """Run `block` in `directory` until it exits (at most BLOCK_TIMEOUT_S); then kill every
    process it left behind (replicas started in the background). Output goes to files, so a
    leftover process holding it cannot keep the runner waiting."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, not an installed one
    if block.kind == "python":
        script = directory / "snippet.py"
        script.write_text(block.text + "\n")
        command = [sys.executable, str(script)]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", block.text]
    out, err = directory / "snippet.stdout", directory / "snippet.stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(command, cwd=directory, env=env, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            returncode = process.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    return subprocess.CompletedProcess(command, returncode, out.read_text(), err.read_text())


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_each_code_block_runs_as_written(block, tmp_path):
    result = run_block(block, scratch_checkout(tmp_path))
    assert result.returncode == 0, (
        f"{block.name} ({block.kind}) exited with {result.returncode} (None: ran over "
        f"{BLOCK_TIMEOUT_S} s)\n--- stdout\n"
        f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


@pytest.mark.parametrize("block", EXAMPLES, ids=[b.name for b in EXAMPLES])
def test_each_example_block_is_its_file_verbatim(block):
    path = ROOT / block.example
    assert path.is_file(), f"{block.name}: {block.example} does not exist"
    if os.environ.get("UPDATE_README"):
        text = block.path.read_text()
        text = text.replace(f"<!-- example: {block.example} -->\n```{block.language}\n"
                            f"{block.text}\n```", f"<!-- example: {block.example} -->\n"
                            f"```{block.language}\n{path.read_text().rstrip()}\n```")
        block.path.write_text(text)
        return
    assert block.text == path.read_text().rstrip("\n"), (
        f"{block.name} differs from {block.example} (UPDATE_README=1 rewrites it)"
    )


def test_the_readme_shows_each_required_example():
    """Issue 16 item 1: the embedded counter, the counter as processes, the counter under the
    simulator and a ledger session are in the README, each its file verbatim."""
    shown = {b.example for b in EXAMPLES if b.path == ROOT / "README.md"}
    assert {"examples/counter_embedded.py", "examples/counter_cluster.sh",
            "examples/counter_simulated.py", "examples/ledger_session.py"} <= shown


def test_the_readme_has_runnable_blocks_of_both_kinds():
    """The scan finds the README's blocks: a parser that found none would pass everything."""
    readme = {b.kind for b in RUN if b.path == ROOT / "README.md"}
    assert readme == {"python", "shell"}


def test_the_replay_example_names_a_file_the_run_before_it_writes():
    """Issue 16: `simulations replay` named a file that passing runs never write. The block
    that replays must first run with --save-replay, which writes exactly that file."""
    replays = [b for b in RUN if "simulations replay" in b.text]
    assert replays
    for block in replays:
        replay = re.search(r"simulations replay (\S+)", block.text).group(1)
        run = re.search(r"simulations run (\S+) --seed (\d+).*--save-replay", block.text)
        assert run is not None, f"{block.name}: no run --save-replay before the replay"
        assert replay == f"replays/{run.group(1)}-seed{run.group(2)}.json"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("```python\nprint(1)\n```\n", [("python", "print(1)", None, None)]),
        ("<!-- example: examples/x.py -->\n```python\nA\n```\n",
         [("python", "A", "examples/x.py", None)]),
        ("<!-- not run by tests/test_readme.py: needs hosts -->\n```sh\nB\n```\n",
         [("sh", "B", None, "needs hosts")]),
        ("```\ndiagram\n```\ntext\n````sh\n```\nC\n````\n", [("", "diagram", None, None),
                                                             ("sh", "```\nC", None, None)]),
    ],
)
def test_the_parser_reads_fences_and_markers(markdown, expected):
    blocks = parse_blocks(markdown, ROOT / "X.md")
    assert [(b.language, b.text, b.example, b.skip_reason) for b in blocks] == expected


@pytest.mark.parametrize(
    "markdown",
    [
        "```python\nprint(1)\n",  # never closed
        "<!-- not run by tests/test_readme.py: -->\n```sh\nB\n```\n",  # no reason
        "<!-- not run: forgot the form -->\n```sh\nB\n```\n",  # misspelt marker
        "<!-- example:examples/x.py -->\n```python\nA\n```\n",
    ],
)
def test_the_parser_refuses_unclosed_fences_and_unreadable_markers(markdown):
    with pytest.raises(MarkdownError):
        parse_blocks(markdown, ROOT / "X.md")


def test_a_failing_block_fails_and_leaves_no_process(tmp_path):
    """The runner reports a failing command (bash -e) and kills what a block left running."""
    marker = tmp_path / "still-running"
    block = Block(ROOT / "X.md", 1, "sh", f"(sleep 30; touch {marker}) &\nfalse\necho not reached")
    result = run_block(block, tmp_path)
    assert result.returncode != 0 and "not reached" not in result.stdout
    survivors = subprocess.run(["pgrep", "-f", f"touch {marker}"], capture_output=True, text=True)
    assert survivors.stdout.strip() == ""
