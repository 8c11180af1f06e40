"""modalmerge.io: the write-only-if-changed helper (the cohort plan, dataset_description.json)."""

from __future__ import annotations

import os

import pytest

from modalmerge import io


def test_equal_text_leaves_the_file_and_its_mtime_alone(tmp_path):
    path = tmp_path / "sub" / "plan.json"
    assert io.write_text_if_changed(path, "a\n")  # parent folder made
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # an old mtime, so a rewrite would show
    assert not io.write_text_if_changed(path, "a\n")
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert io.write_text_if_changed(path, "b\n")
    assert path.read_text() == "b\n" and path.stat().st_mtime_ns != 1_000_000_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["plan.json"]  # no temporary left


def test_a_file_that_is_not_text_is_replaced(tmp_path):
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xff\xfe\x00")
    assert io.write_text_if_changed(path, "a\n")
    assert path.read_text() == "a\n"


def test_a_failed_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    """Atomic: the text goes to a temporary name that replaces the file only when complete."""
    path = tmp_path / "plan.json"
    path.write_text("old\n")

    def fail(self, data, *args, **kwargs):  # half the text reaches the disk, then it fails
        self.write_bytes(data[:2].encode())
        raise OSError("disk full")

    monkeypatch.setattr(type(path), "write_text", fail)
    with pytest.raises(OSError, match="disk full"):
        io.write_text_if_changed(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
