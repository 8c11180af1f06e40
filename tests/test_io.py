"""modalmerge.io: the write-only-if-changed helper (the cohort plan, dataset_description.json)
and the predictions.npz reader."""

from __future__ import annotations

import os

import numpy as np
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


def test_load_arrays_reads_every_array_of_a_predictions_file(tmp_path):
    path = tmp_path / "predictions.npz"
    np.savez(path, target=np.arange(6.0).reshape(2, 3), subjects=np.array(["sub-001", "sub-002"]))
    arrays = io.load_arrays(path)
    assert sorted(arrays) == ["subjects", "target"]
    np.testing.assert_array_equal(arrays["target"], np.arange(6.0).reshape(2, 3))
    assert list(arrays["subjects"]) == ["sub-001", "sub-002"]


@pytest.mark.parametrize(
    "content, problem",
    [(None, "predictions is missing"), (b"", "predictions is empty"),
     (b"not a zip archive", "not a readable predictions file")],
)  # fmt: skip
def test_load_arrays_names_a_missing_empty_or_corrupt_file(tmp_path, content, problem):
    path = tmp_path / "eval" / "predictions.npz"
    if content is not None:
        path.parent.mkdir()
        path.write_bytes(content)
    with pytest.raises(io.InputError, match=problem) as caught:
        io.load_arrays(path)
    assert caught.value.path == str(path)


def test_load_arrays_refuses_pickled_objects(tmp_path):
    path = tmp_path / "predictions.npz"
    np.savez(path, ragged=np.array([[1], [1, 2]], dtype=object))
    with pytest.raises(io.InputError, match="not a readable predictions file"):
        io.load_arrays(path)
