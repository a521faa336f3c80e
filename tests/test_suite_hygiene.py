"""The test suite's own rules: test files import only ``helpers`` (never ``conftest`` or
another test file), so the suite runs under ``--import-mode=importlib`` too."""
import ast
import pathlib

import pytest

TESTS = pathlib.Path(__file__).parent


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_no_imports_of_conftest_or_other_test_files(path):
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        bad += [f"line {node.lineno}: {n}" for n in names if n == "conftest" or n.split(".")[0].startswith("test_")]
    assert bad == [], f"{path.name} imports {bad}; shared code belongs in tests/helpers.py"
