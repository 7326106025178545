"""The repository stands alone: every document path that its Markdown files, docstrings and
comments cite exists in the repository, and none points outside it (a sibling checkout, an
absolute path). Method: scan the prose for paths, resolve each as a reader would."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Directories that hold no sources of ours.
SKIPPED_DIRS = frozenset({".git", ".venv", "build", "dist", "replays", "__pycache__"})
#: A Markdown file anywhere (`docs/ARCHITECTURE.md`, `../tradeapp/README.md`, `PBFT-RULES.md`),
#: or a source file named from a top-level directory (`tests/test_architecture.py`). Never
#: inside a URL: a path preceded by a word, a dot, a slash or a colon is not a start.
CITED_PATH = re.compile(
    r"(?<![\w.\-/:])("
    r"/?(?:[\w.\-]+/)*[\w\-][\w.\-]*\.md"
    r"|(?:pbft|tests|tradeapp|simulations|benchmarks|docs)/(?:[\w.\-]+/)*[\w\-]+\.(?:py|toml)"
    r")\b"
)


def source_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
            continue
        if path.suffix in (".py", ".md") and path.is_file():
            files.append(path)
    return files


def prose(path: Path) -> str:
    """What a file says to its reader: all of a Markdown file; a Python module's docstrings
    and comments (string literals in code are data, checked by the tests that use them)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return text
    pieces = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if (docstring := ast.get_docstring(node, clean=False)) is not None:
                pieces.append(docstring)
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            pieces.append(token.string)
    return "\n".join(pieces)


def resolve(cited: str, citing: Path, root: Path = ROOT) -> Path | None:
    """Where `cited` (a path in `citing`'s prose) is in the repository, or None if nowhere.

    A path is relative to the citing file's directory (Markdown links, a module naming its
    neighbour) or to the repository root (`docs/PBFT-RULES.md`); a bare name of a document in
    docs/ means that document (`PBFT-RULES.md`). An absolute path, or one that leaves the
    repository, is never found."""
    if cited.startswith("/"):
        return None
    candidates = [citing.parent / cited, root / cited]
    if "/" not in cited:
        candidates.append(root / "docs" / cited)
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved
    return None


def missing_paths(text: str, citing: Path, root: Path = ROOT) -> list[str]:
    """The paths `text` (the prose of `citing`) cites that `resolve` cannot find."""
    cited = (match.group(1) for match in CITED_PATH.finditer(text))
    return [path for path in cited if resolve(path, citing, root) is None]


def test_every_cited_document_path_exists_in_the_repository():
    files = source_files()
    assert {ROOT / "docs" / "ARCHITECTURE.md", ROOT / "pbft" / "core" / "replica.py"} <= set(files)
    problems = []
    for path in files:
        for cited in missing_paths(prose(path), path):
            problems.append(f"{path.relative_to(ROOT)}: {cited}")
    assert not problems, "cited paths that are not in the repository:\n" + "\n".join(problems)


def test_the_documents_the_code_cites_are_in_docs():
    for name in ("ARCHITECTURE.md", "PBFT-RULES.md", "STYLE.md", "TRADE-DOMAIN.md"):
        assert (ROOT / "docs" / name).is_file(), name


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("see ../shared/TRADE-DOMAIN.md", ["../shared/TRADE-DOMAIN.md"]),
        ("see /work/shared/ARCHITECTURE.md", ["/work/shared/ARCHITECTURE.md"]),
        ("rules in PBFT-RULES.md and NOPE.md", ["NOPE.md"]),
        ("checked by tests/test_sizes.py", ["tests/test_sizes.py"]),
        ("[rules](../docs/PBFT-RULES.md), docs/ARCHITECTURE.md, LIFECYCLES.md", []),
        ("https://github.com/etcd-io/raft/blob/main/README.md", []),
        ("tests/test_architecture.py and pbft/core/replica.py", []),
    ],
)
def test_the_scan_finds_what_is_missing_and_only_that(text, missing):
    """Paths resolve from the citing file (tradeapp/README.md here), the root, or docs/."""
    assert missing_paths(text, ROOT / "tradeapp" / "README.md") == missing


def test_docstrings_and_comments_are_scanned_but_not_string_literals(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('"""See GONE.md."""\n# and OLD.md\nname = "DATA.md"\n', encoding="utf-8")
    assert missing_paths(prose(module), module, tmp_path) == ["GONE.md", "OLD.md"]
