"""Every validating pattern in module_utils ends in ``\\Z``: ``$`` also matches before a final newline, so ``re.match``
with it would accept 'vm1\\n', a MAC or uuid with a newline, and the like."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODULE_UTILS = Path(__file__).resolve().parents[3].parent / "plugins" / "module_utils"
RE_CALLS = ("compile", "match", "fullmatch", "search")


def patterns(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, pattern text) of every literal pattern handed to ``re.compile``/``match``/``fullmatch``/``search``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RE_CALLS \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[-1], ast.Constant):
                found.append((node.lineno, str(arg.values[-1].value)))
    return found


SOURCES = sorted(MODULE_UTILS.rglob("*.py"))


def test_the_scan_sees_the_patterns():
    assert len(SOURCES) > 20
    found = [p for path in SOURCES for p in patterns(ast.parse(path.read_text(encoding="utf-8")))]
    assert len(found) >= 15 and any(text.endswith("\\Z") for _line, text in found)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(MODULE_UTILS)))
def test_no_pattern_ends_in_a_dollar(path):
    bad = [f"line {line}: {text!r}" for line, text in patterns(ast.parse(path.read_text(encoding="utf-8"))) if text.endswith("$")]
    assert bad == []


def test_the_scan_finds_a_dollar():
    assert patterns(ast.parse('import re\nX = re.compile(r"^a$")\nre.match(rf"^{X}$", "a")')) == [(2, "^a$"), (3, "$")]
