"""utils.atomic: the one helper for atomic writes, and the check that the package uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import multi_agent_pruning
from multi_agent_pruning.utils.atomic import atomic_replace_dir, atomic_write, atomic_write_json

PACKAGE = Path(multi_agent_pruning.__file__).parent


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


def test_text_bytes_and_writer_functions(tmp_path):
    assert atomic_write(tmp_path / "a" / "t.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "c.txt", lambda temp: Path(temp).write_text("via name")).read_text() == "via name"
    assert atomic_write_json(tmp_path / "d.json", {"x": Path("p")}).read_text() == '{\n  "x": "p"\n}'
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "a") == []


def test_a_writer_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = atomic_write(tmp_path / "keep.txt", "old")

    def half_then_fail(temp: str) -> None:
        Path(temp).write_text("half")
        raise RuntimeError("serialiser broke")

    with pytest.raises(RuntimeError, match="serialiser broke"):
        atomic_write(target, half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, lambda temp: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_a_folder_is_not_overwritten(tmp_path):
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path, "x")
    assert [p for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}.")] == []


def test_replace_dir_keeps_the_old_folder_when_the_copy_fails(tmp_path):
    old = tmp_path / "best"
    old.mkdir()
    (old / "model.json").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "model.json").write_text("new")
    assert (atomic_replace_dir(new, old) / "model.json").read_text() == "new"
    with pytest.raises(OSError):
        atomic_replace_dir(tmp_path / "missing", old)
    assert (old / "model.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "new"]


def test_single_file_writes_of_the_package_go_through_the_helper():
    """``os.replace`` / ``mkstemp`` / ``NamedTemporaryFile`` appear only in the helper and in the
    result store's all-or-nothing commit of several files (results/_files.py)."""
    allowed = {"utils/atomic.py", "results/_files.py"}
    pattern = re.compile(r"\bos\.replace\(|\bmkstemp\(|\bNamedTemporaryFile\(|\.rename\(\s*(tmp|temp)")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in allowed:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code) and "``" not in code:
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []
