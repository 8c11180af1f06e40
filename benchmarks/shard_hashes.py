"""Shards of many ``write_shards`` code paths, one SHA-256 (16 hex digits) per file: run it at
two commits and ``diff`` the outputs to show a refactor leaves every shard byte-identical.

Usage (from the repository root)::

    .venv/bin/python benchmarks/shard_hashes.py /tmp/shards-a > a.txt
    # ... change the code ...
    .venv/bin/python benchmarks/shard_hashes.py /tmp/shards-b > b.txt && diff a.txt b.txt

The inputs are the tests' fixtures (tests/test_shards.py and its neighbours): subject, time
and site splits, texts or none, tangent connectivity, ComBat with site and subject splits,
``shard.tr`` resampling, a censored run, extra anatomy with a label channel, point clouds,
SC graphs, and volume series with and without events: 14 cases, 65 files, about 5 CPU s.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path[:0] = [".", "tests"]  # the tests' fixture builders

from modalmerge.data.point_clouds import point_cloud_name, write_point_cloud  # noqa: E402
from modalmerge.data.shards.subjects import write_shards  # noqa: E402
from tests.test_shards import PARAMS, make_inputs  # noqa: E402
from tests.test_shards_graph import _sc, _write_sc  # noqa: E402
from tests.test_shards_views import PARAMS as TIME_PARAMS  # noqa: E402
from tests.test_shards_views import make_run  # noqa: E402
from tests.test_shards_volumes import VOLUMES, write_bold, write_events  # noqa: E402
from tests.test_sites import SITE_SHARDS, site_inputs  # noqa: E402


def write_cases(out: Path, work: Path) -> None:
    """Every case's shard directory under ``out`` (inputs under ``work``)."""
    root = work / "basic"
    s, p, a, t, x = make_inputs(root)
    write_shards(s, p, a, t, x, out / "basic", PARAMS)
    write_shards(s, p, a, t, None, out / "notext", PARAMS)
    write_shards(s, p, a, t, x, out / "tangent", {**PARAMS, "connectivity": "tangent"})
    bold, events = write_bold(root, s), write_events(root)
    volumes = PARAMS | {"volume_series": VOLUMES}
    write_shards(s, p, a, t, x, out / "volumes", volumes, bold=bold, events=events)
    write_shards(s, p, a, t, x, out / "volumes_rest", volumes, bold=bold)
    rng = np.random.default_rng(0)
    clouds = []
    for i, sid in enumerate(s):
        points = np.concatenate([rng.normal(0, 50, (32, 3)), rng.normal(10 * i, 2, (32, 2))], 1)
        clouds.append(write_point_cloud(root / "raw" / point_cloud_name(sid), points, ["u", "v"]))
    write_shards(s, p, a, t, x, out / "clouds", PARAMS, point_clouds=clouds)
    extra = {"dseg": a, "T2w": a}
    write_shards(s, p, a, t, x, out / "extra", PARAMS, extra_anatomy=extra, label_channels=["dseg"])
    for i, sid in enumerate(s):
        _write_sc(t.parent, sid, _sc(i))
    write_shards(s, p, a, t, x, out / "sc", PARAMS)

    s, p, a, t, x = make_inputs(work / "censored")  # volume 3 of sub-002 censored
    with np.load(p[1]) as npz:
        arrays = dict(npz)
    kept = np.delete(np.arange(20), 3)
    arrays.update(roi_timeseries=arrays["roi_timeseries"][kept], volume_index=kept, n_volumes=20)
    np.savez(p[1], **arrays)
    write_shards(s, p, a, t, x, out / "censored", PARAMS)

    (work / "sites").mkdir()
    s, p, a, t = site_inputs(work / "sites")
    write_shards(s, p, a, t, None, out / "site", SITE_SHARDS)
    write_shards(s, p, a, t, None, out / "site_combat", {**SITE_SHARDS, "harmonize": "combat"})
    by_subject = {**SITE_SHARDS, "split_by": "subject", "test_site": None, "harmonize": "combat"}
    write_shards(s, p, a, t, None, out / "subject_combat", by_subject)
    (work / "tr").mkdir()
    s, p, a, t = site_inputs(work / "tr", tr_of=lambda k: 1.0 if k % 3 == 2 else 2.0)
    write_shards(s, p, a, t, None, out / "site_tr", {**SITE_SHARDS, "tr": 2.0})

    (work / "time").mkdir()
    s, p, a, t, x = make_run(work / "time", n_subjects=2, texts=True)
    write_shards(s, p, a, t, x, out / "time", TIME_PARAMS)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        write_cases(out, Path(work))
    for path in sorted(out.rglob("*")):
        if path.is_file():
            print(hashlib.sha256(path.read_bytes()).hexdigest()[:16], path.relative_to(out))


if __name__ == "__main__":
    main()
