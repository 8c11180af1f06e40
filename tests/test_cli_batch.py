"""``modalmerge batch``: several per-subject commands in one process (issue 14 item 1)."""

from __future__ import annotations

import json

from modalmerge.cli import main

DATASET = {"name": "b", "kind": "synthetic",
           "params": {"seed": 1, "n_subjects": 2, "voxel_size_mm": 8.0,
                      "grid_shape": [18, 22, 18], "n_regions": 4, "n_timepoints": 20}}  # fmt: skip


def _acquire(subject, root):
    return ["acquire-subject", "--dataset", json.dumps(DATASET), "--root", str(root),
            "--subject", subject]  # fmt: skip


def test_a_batch_writes_each_subject_s_files_as_the_single_commands_do(tmp_path):
    batch, single = tmp_path / "batch", tmp_path / "single"
    commands = [_acquire("sub-001", batch), _acquire("sub-002", batch)]
    assert main(["batch", "--commands", json.dumps(commands)]) == 0
    assert main(_acquire("sub-002", single)) == 0
    t1 = "raw/sub-002/anat/sub-002_T1w.nii.gz"
    assert (batch / t1).read_bytes() == (single / t1).read_bytes()
    assert (batch / "raw/sub-001/anat/sub-001_T1w.nii.gz").is_file()


def test_a_batch_refuses_other_subcommands_and_stops_at_a_failing_subject(tmp_path, capsys):
    shard = [["shard", "--settings", "{}", "--out", str(tmp_path)]]
    assert main(["batch", "--commands", json.dumps(shard)]) == 1
    assert "'shard' is not one of" in capsys.readouterr().err
    bad = [_acquire("sub-009", tmp_path), _acquire("sub-001", tmp_path)]  # 9 > n_subjects
    assert main(["batch", "--commands", json.dumps(bad)]) == 1
    assert not (tmp_path / "raw/sub-001").exists()  # stopped at the first failure
