"""The elaboration cache (sim/verilog_cache.py): a text is reused only for the same
component and the same sources, and an edit to any RTL source elaborates afresh."""

from __future__ import annotations

from sim.verilog_cache import RTL_PACKAGES, SOURCE_PACKAGES, cached_verilog, sources_digest


def test_a_text_is_elaborated_once_per_component_and_sources(tmp_path) -> None:
    calls: list[str] = []

    def elaborate(text: str):
        def run() -> str:
            calls.append(text)
            return text

        return run

    cache = tmp_path / "cache"
    assert cached_verilog("A 1", elaborate("a"), cache_dir=cache, sources="s") == "a"
    assert cached_verilog("A 1", elaborate("other"), cache_dir=cache, sources="s") == "a"
    assert calls == ["a"]
    # another component, or the same one from other sources, is elaborated
    assert cached_verilog("A 2", elaborate("b"), cache_dir=cache, sources="s") == "b"
    assert cached_verilog("A 1", elaborate("c"), cache_dir=cache, sources="t") == "c"
    assert calls == ["a", "b", "c"]
    assert not list(cache.glob("*.tmp"))


def test_any_source_edit_changes_the_digest(tmp_path) -> None:
    digest = sources_digest.__wrapped__  # the uncached function: these files change
    packages = ("rtl", "defs")
    (tmp_path / "rtl" / "coproc").mkdir(parents=True)
    (tmp_path / "defs").mkdir()
    deep = tmp_path / "rtl" / "coproc" / "reader.py"
    deep.write_text("WORD_GAP = 1\n")
    (tmp_path / "defs" / "params.py").write_text("X = 1\n")
    (tmp_path / "rtl" / "notes.txt").write_text("not Python")
    before = digest(tmp_path, packages)
    assert digest(tmp_path, packages) == before
    (tmp_path / "rtl" / "notes.txt").write_text("still not Python")
    assert digest(tmp_path, packages) == before
    deep.write_text("WORD_GAP = 2\n")
    edited = digest(tmp_path, packages)
    assert edited != before
    (tmp_path / "defs" / "new.py").write_text("")
    assert digest(tmp_path, packages) != edited


def test_the_rtl_packages_are_all_digested() -> None:
    # every package of this repository the RTL's sources import (directly or through
    # defs and model) is one whose edits count
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    imported: set[str] = set()
    for path in (p for package in RTL_PACKAGES for p in (repo / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    ours = {p.name for p in repo.iterdir() if (p / "__init__.py").exists()}
    assert imported & ours <= set(SOURCE_PACKAGES)
    assert {"rtl", "defs"} <= imported & ours
