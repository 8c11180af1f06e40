"""Code fingerprints: what reruns a stage and what does not.

Each test edits a copy of the package (never the checkout) and compares the
fingerprint a rule would carry before and after the edit.
"""

from __future__ import annotations

import functools
import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

import modalmerge
from modalmerge import fingerprint

DATA_STAGES = (
    "modalmerge.stages.acquire",
    "modalmerge.data.synthetic.cohort",
    "modalmerge.data.preprocess",
    "modalmerge.data.parcellation.parcellate",
    "modalmerge.data.shards.subjects",
    "modalmerge.data.shards.regions",
    "modalmerge.batch_clean",  # the preprocess + parcellate batch job (it calls the CLI)
)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Each test with its own, empty cache file (never the user's) and fresh process caches."""
    path = tmp_path / "cache" / "fingerprints.json"
    monkeypatch.setenv(fingerprint.CACHE_ENV, str(path))
    fingerprint.clear_caches()
    yield path
    fingerprint.clear_caches()


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A fresh ``fingerprint`` module reading a copy of the package under tmp_path."""
    root = tmp_path / "modalmerge"
    shutil.copytree(
        Path(modalmerge.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__")
    )
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_file_location("fp_copy", root / "fingerprint.py")
    )
    module.__spec__.loader.exec_module(module)
    return root, module


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


@pytest.mark.parametrize("stage", DATA_STAGES)
def test_data_stages_never_depend_on_models_training_or_figures(stage):
    closure = fingerprint.module_closure(stage)
    heavy = [m for m in closure if m.split(".")[1:2] in (["models"], ["training"], ["viz"])]
    assert heavy == [], f"{stage} imports {heavy}"
    assert "torch" not in fingerprint.third_party_imports(stage)


def test_lazy_package_exports_are_not_followed():
    # modalmerge/__init__.py names models, training and viz in its __getattr__ only
    assert fingerprint.module_closure("modalmerge") == ("modalmerge", "modalmerge._version")


def test_comment_and_docstring_edits_keep_the_fingerprint(package_copy):
    root, fp = package_copy
    before = fp.code_fingerprint("modalmerge.data.parcellation.parcellate")
    target = root / "data" / "parcellation" / "connectivity.py"
    text = target.read_text()
    text = text.replace('"""Functional', '"""Edited docstring.\n\nFunctional', 1)
    target.write_text(text + "\n\n# a comment\n")
    fp = _reload(fp, root)
    assert fp.code_fingerprint("modalmerge.data.parcellation.parcellate") == before


def test_a_settings_field_doc_edit_keeps_every_fingerprint_and_its_default_does_not(
    package_copy,
):
    """A field's ``doc=`` reaches the config schema only: rewording it reruns nothing, while
    changing the field's default (what preprocess computes with) reruns it."""
    root, fp = package_copy
    before = [fp.code_fingerprint(s) for s in DATA_STAGES]
    settings = root / "settings.py"
    text = settings.read_text()
    old = 'F(True, doc="remove a linear trend from each voxel\'s series")'
    assert old in text
    settings.write_text(text.replace(old, 'F(True, doc="reworded: a linear detrend per voxel")'))
    fp = _reload(fp, root)
    assert [fp.code_fingerprint(s) for s in DATA_STAGES] == before
    settings.write_text(text.replace(old, old.replace("F(True,", "F(False,")))
    fp = _reload(fp, root)
    preprocess = DATA_STAGES.index("modalmerge.data.preprocess")
    assert fp.code_fingerprint(DATA_STAGES[preprocess]) != before[preprocess]


def test_behaviour_edit_in_an_imported_module_changes_the_fingerprint(package_copy):
    root, fp = package_copy
    before = fp.code_fingerprint("modalmerge.data.parcellation.parcellate")
    untouched = fp.code_fingerprint("modalmerge.data.preprocess")
    _append(root / "data" / "parcellation" / "connectivity.py", "\nEXTRA = 1\n")
    fp = _reload(fp, root)
    assert fp.code_fingerprint("modalmerge.data.parcellation.parcellate") != before
    assert fp.code_fingerprint("modalmerge.data.preprocess") == untouched


def test_figure_code_edit_leaves_data_stages_alone(package_copy):
    root, fp = package_copy
    data = [fp.code_fingerprint(s) for s in DATA_STAGES]
    figures = fp.code_fingerprint("modalmerge.stages.figures")
    _append(root / "viz" / "figures.py", "\nEXTRA = 1\n")
    fp = _reload(fp, root)
    assert [fp.code_fingerprint(s) for s in DATA_STAGES] == data
    assert fp.code_fingerprint("modalmerge.stages.figures") != figures


def test_command_line_edit_changes_every_stage(package_copy):
    root, fp = package_copy
    before = [fp.code_fingerprint(s) for s in DATA_STAGES]
    _append(root / "cli.py", "\nEXTRA = 1\n")
    fp = _reload(fp, root)
    after = [fp.code_fingerprint(s) for s in DATA_STAGES]
    assert all(a != b for a, b in zip(after, before, strict=True))


def test_dependency_version_enters_the_fingerprint(monkeypatch):
    stage = "modalmerge.data.parcellation.parcellate"
    versions = fingerprint.dependency_versions(stage)
    assert {"nilearn", "nibabel", "numpy"} <= set(versions)
    before = fingerprint.code_fingerprint(stage)
    real = fingerprint.metadata.version

    def upgraded(dist):
        return "99.0" if dist == "nilearn" else real(dist)

    monkeypatch.setattr(fingerprint.metadata, "version", upgraded)
    fingerprint.clear_caches()
    try:
        assert fingerprint.code_fingerprint(stage) != before
        assert fingerprint.dependency_versions(stage)["nilearn"] == "99.0"
    finally:
        fingerprint.clear_caches()


def test_optional_dependency_absent_is_recorded(monkeypatch):
    stage = "modalmerge.data.parcellation.parcellate"
    assert "numba" in fingerprint.third_party_imports(stage)
    real = fingerprint.metadata.version

    def without_numba(dist):
        if dist == "numba":
            raise fingerprint.metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(fingerprint.metadata, "version", without_numba)
    fingerprint.clear_caches()  # installed versions are cached per process
    try:
        assert fingerprint.dependency_versions(stage)["numba"] == "absent"
    finally:
        fingerprint.clear_caches()


def _reload(fp, root: Path):
    """A fresh copy of the fingerprint module (its caches are per module object)."""
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_file_location("fp_copy", root / "fingerprint.py")
    )
    module.__spec__.loader.exec_module(module)
    sys.modules.pop("fp_copy", None)
    return module


def test_data_stage_fingerprint_ignores_torch_version(monkeypatch):
    # the CLI imports every stage lazily; its closure must not pull torch into acquire's identity
    stage = "modalmerge.data.preprocess"
    before = fingerprint.code_fingerprint(stage)
    real = fingerprint.metadata.version
    monkeypatch.setattr(
        fingerprint.metadata, "version", lambda d: "99.0" if d == "torch" else real(d)
    )
    fingerprint.clear_caches()
    try:
        assert fingerprint.code_fingerprint(stage) == before
        assert fingerprint.code_fingerprint("modalmerge.stages.train") != before
    finally:
        fingerprint.clear_caches()


@functools.cache
def _refuse_to_parse(path):
    raise AssertionError(f"parsed {path}: the cache file was not used")


def test_a_new_process_takes_the_fingerprint_from_the_cache_file(fresh_cache, monkeypatch):
    """What every Snakemake start and cluster job saves: no module is parsed when the cache
    file knows this source; the fingerprint is the one parsing gives."""
    stages = ("modalmerge.data.preprocess", "modalmerge.stages.train")
    parsed = [fingerprint.code_fingerprint(s) for s in stages]
    assert fresh_cache.is_file()
    fingerprint.clear_caches()  # as a new process
    monkeypatch.setattr(fingerprint, "_tree", _refuse_to_parse)
    assert [fingerprint.code_fingerprint(s) for s in stages] == parsed
    assert "torch" in fingerprint.dependency_versions("modalmerge.stages.train")


def test_an_edit_misses_a_warm_cache(package_copy, fresh_cache):
    root, fp = package_copy
    before = fp.code_fingerprint("modalmerge.data.preprocess")
    _append(root / "data" / "preprocess.py", "\nEXTRA = 1\n")
    fp = _reload(fp, root)  # same cache file, new source
    assert fp.code_fingerprint("modalmerge.data.preprocess") != before
    assert len(json.loads(fresh_cache.read_text())) == 2  # one entry per source seen


@pytest.mark.parametrize("content", ["not json {", "[1, 2]", '{"x": 1}'])
def test_a_broken_cache_file_is_ignored_and_replaced(fresh_cache, content):
    expected = fingerprint.code_fingerprint("modalmerge.data.preprocess")
    fresh_cache.write_text(content)
    fingerprint.clear_caches()
    assert fingerprint.code_fingerprint("modalmerge.data.preprocess") == expected
    assert fingerprint.package_digest() in json.loads(fresh_cache.read_text())


def test_an_empty_cache_setting_writes_nothing(fresh_cache, monkeypatch):
    monkeypatch.setenv(fingerprint.CACHE_ENV, "")
    fingerprint.clear_caches()
    assert fingerprint.code_fingerprint("modalmerge.data.preprocess")
    assert not fresh_cache.exists()
