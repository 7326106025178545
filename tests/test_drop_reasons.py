"""Drop reasons are one vocabulary (issue 13, item 10): `pbft.core.drops.REASONS` names exactly
the reasons the core, the client session and the node's door checks use, and the runtime logs
as warnings exactly `drops.SUSPICIOUS`, all of them reasons that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pbft.core import drops

ROOT = Path(__file__).resolve().parent.parent


def _reasons_in(paths, returns: bool) -> dict[str, set[str]]:
    """String constants used as `dropped[...]` keys or passed to the node's `_drop`; with
    `returns`, also those returned (the core's checks return their reason)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            value = None
            if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                    and getattr(node.value, "attr", getattr(node.value, "id", "")) == "dropped"):
                value = node.slice.value
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "_drop"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                value = node.args[0].value
            elif (returns and isinstance(node, ast.Return) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                    and re.fullmatch(r"[a-z_]+", node.value.value)):
                value = node.value.value
            if isinstance(value, str):
                found.setdefault(value, set()).add(path.name)
    return found


def test_the_code_uses_exactly_the_vocabulary():
    used = _reasons_in(sorted((ROOT / "pbft" / "core").glob("*.py")), returns=True)
    for reason, files in _reasons_in([ROOT / "pbft" / "runtime" / "node.py"], False).items():
        used.setdefault(reason, set()).update(files)
    unknown = {reason: files for reason, files in used.items() if reason not in drops.REASONS}
    assert unknown == {}, "reasons missing from pbft/core/drops.py"
    assert set(drops.REASONS) - set(used) == set(), "reasons nothing uses"


def test_the_suspicious_reasons_are_reasons():
    assert drops.SUSPICIOUS <= set(drops.REASONS)
    assert "wrong_view" not in drops.SUSPICIOUS and "duplicate_vote" not in drops.SUSPICIOUS
