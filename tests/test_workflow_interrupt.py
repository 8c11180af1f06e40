"""Interrupted runs lose nothing (issue 11): kill Snakemake mid-stage, rerun, same outputs.

The data stages of a 4-subject tiny cohort run once uninterrupted and once
killed (SIGTERM to the whole process group, then SIGKILL) while preprocess is
writing; after ``--unlock`` the rerun (``--rerun-incomplete``, as the default
profile sets) completes, and every output equals the uninterrupted run's
(images, arrays and HDF5 datasets by value, tables and JSON by text). A reader
polling a file that :func:`modalmerge.io.atomic_path` keeps replacing sees
only complete versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from workflow_utils import BIN, copy_project, load_yaml, snakemake, write_config

from modalmerge.io import atomic_path

pytestmark = pytest.mark.slow

TARGET = "results/tiny/shards"


def _config(workdir: Path) -> dict:
    config = load_yaml(workdir / "configs" / "tiny.yaml")
    config["dataset"]["params"]["n_subjects"] = 4
    config["shard"]["fractions"] = {"train": 0.5, "val": 0.25, "test": 0.25}
    return config


def _values(path: Path):
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        img = nib.load(path)
        return [np.asanyarray(img.dataobj), img.affine]
    if name.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    if name.endswith(".h5"):
        import h5py

        out = {}
        with h5py.File(path, "r") as fh:
            fh.visititems(
                lambda key, obj: out.__setitem__(key, obj[()]) if hasattr(obj, "shape") else None
            )
        return out
    return path.read_bytes()


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return a == b


def _outputs(root: Path) -> dict[str, Path]:
    skip = ("manifest.json",)  # compared below without its timestamps, if any
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if (p.is_file() or p.is_symlink()) and not p.name.startswith(".") and p.name not in skip
    }


def test_kill_mid_stage_then_rerun_equals_an_uninterrupted_run(tmp_path):
    clean = copy_project(tmp_path / "clean")
    write_config(clean, _config(clean))
    result = snakemake(clean, TARGET)
    assert result.returncode == 0, result.stderr[-3000:]

    work = copy_project(tmp_path / "killed")
    write_config(work, _config(work))
    env = dict(os.environ, PYTHONPATH=str(work), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "2", TARGET],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    preproc = work / "results" / "tiny" / "preproc"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if preproc.exists() and len(list(preproc.glob("sub-*/func/*_bold.nii.gz"))) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    assert not (work / "results" / "tiny" / "shards").exists()

    snakemake(work, "--unlock")
    result = snakemake(work, "--rerun-incomplete", TARGET)
    assert result.returncode == 0, result.stderr[-3000:]

    want = _outputs(clean / "results" / "tiny")
    got = _outputs(work / "results" / "tiny")
    assert sorted(got) == sorted(want)
    differ = [name for name in want if not _equal(_values(want[name]), _values(got[name]))]
    assert not differ, differ
    manifests = [
        json.loads((d / "results/tiny/shards/manifest.json").read_text()) for d in (clean, work)
    ]
    for m in manifests:
        m.pop("created", None)
    assert manifests[0] == manifests[1]


def test_a_reader_never_sees_a_half_written_replacement(tmp_path):
    target = tmp_path / "shard-0000.h5"
    payloads = [bytes([i]) * (4 << 20) for i in range(1, 5)]  # 4 MiB each
    digests = {hashlib.sha1(p).hexdigest() for p in payloads}
    target.write_bytes(payloads[0])
    stop = threading.Event()
    seen, bad = [], []

    def read():
        while not stop.is_set():
            data = target.read_bytes()
            (seen if hashlib.sha1(data).hexdigest() in digests else bad).append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(40):
            with atomic_path(target) as tmp, open(tmp, "wb") as fh:
                payload = payloads[round_ % len(payloads)]
                for start in range(0, len(payload), 1 << 16):  # written in pieces
                    fh.write(payload[start : start + (1 << 16)])
                    fh.flush()
    finally:
        stop.set()
        reader.join()
    assert seen and not bad
    assert not list(tmp_path.glob(".tmp-*"))
