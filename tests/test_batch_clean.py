"""``python -m modalmerge.batch_clean``: the preprocess + parcellate batch that deletes each
temporary cleaned BOLD (its run in the workflow: tests/test_workflow_reruns.py)."""

from __future__ import annotations

import json

from modalmerge.batch_clean import main


def test_it_removes_only_a_bold_a_preprocess_above_wrote(tmp_path, capsys):
    other = tmp_path / "raw.nii.gz"
    other.write_bytes(b"x")
    commands = tmp_path / "commands.json"
    commands.write_text(json.dumps([["remove-intermediate", str(other)]]))
    assert main([str(commands)]) == 1
    assert "was not written by a preprocess above" in capsys.readouterr().err
    assert other.exists()


def test_a_malformed_commands_file_is_named_in_the_error(tmp_path, capsys):
    commands = tmp_path / "commands.json"
    commands.write_text('{"not": "a list"}')
    assert main([str(commands)]) == 1
    err = capsys.readouterr().err
    assert str(commands) in err and "expected a JSON list" in err
