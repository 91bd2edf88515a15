"""The layers import downwards only (DESIGN.md §1): an import that runs back up fails here.

An AST walk over every module, so imports inside functions and under
`TYPE_CHECKING` count too: a type-only import of the CLI still ties the lower
layer to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("defs", "model", "rtl", "sim", "boards", "compiler", "grace")

#: package → the project packages (or single modules) it may import.
ALLOWED: dict[str, tuple[str, ...]] = {
    "defs": ("defs",),
    "model": ("defs", "model"),
    # the numeric spec and shape arithmetic of the reference (NumPy only)
    "rtl": (
        "defs",
        "rtl",
        "model.fixed",
        "model.fixed_ops",
        "model.fixed_motion",
        "model.conv_shape",
    ),
    # the host side: layouts and programs the benches and L3 run (sim/conv.py's
    # layer layout moves here, issue 16)
    "compiler": ("defs", "model", "rtl", "compiler"),
    "sim": ("defs", "model", "rtl", "compiler", "sim"),
    "boards": ("defs", "rtl", "boards"),
    "grace": PROJECT,
}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a project package in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in PROJECT]
    return found


def allowed(package: str, module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED[package])


@pytest.mark.parametrize("package", list(ALLOWED))
def test_layer_imports_only_what_is_below_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in project_imports(path)
        if not allowed(package, module)
    ]
    assert not wrong, "imports that run back up the layers:\n" + "\n".join(wrong)


def test_defs_import_only_the_standard_library() -> None:
    import sys

    for path in sorted((ROOT / "defs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert root == "defs" or root in sys.stdlib_module_names, (
                    f"{where} imports {root}, not the standard library"
                )


def test_the_walk_sees_a_planted_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a CLI import inside a function is found."""
    module = tmp_path / "planted.py"
    module.write_text("def f():\n    from grace.cli import main\n    import rtl.conv\n")
    found = project_imports(module)
    assert found == [(2, "grace.cli"), (3, "rtl.conv")]
    assert not allowed("rtl", "grace.cli")
    assert not allowed("model", "rtl.conv")
