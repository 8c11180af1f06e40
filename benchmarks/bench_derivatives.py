"""Benchmark reading one parcellated subject: the .npz the shard stage reads vs the TSVs.

Usage: .venv/bin/python benchmarks/bench_derivatives.py [--n-time 150] [--n-roi 16] [--repeat 50]

Writes one subject as the parcellate stage does (``write_tables`` for the BIDS-
derivative TSVs, ``np.savez`` for the arrays) into a temporary folder, then times,
in the same process, best of ``--repeat``:

- npz: ``modalmerge.data.shards.roi_series._load_parcellated`` (what ``write_shards`` calls);
- tsv: the same arrays from the TSVs with pandas (time series with ``n/a`` rows ->
  kept rows and their volume index, relmat, morph) plus ``atlas/labels.tsv`` for
  the ROI labels and coordinates the .npz carries.

Defaults are the default config's subject (synthetic: 150 volumes, 16 regions, 6
features); ``--n-time 652 --n-roi 83`` is a Desikan-Killiany-sized real run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.data.parcellation.parcellate import FEATURE_NAMES, write_tables
from modalmerge.data.shards.roi_series import _load_parcellated

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_parcellate import best  # noqa: E402


def subject_arrays(n_time: int, n_roi: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    series = rng.standard_normal((n_time, n_roi)).astype(np.float32)
    names = [f"region{k:03d}" for k in range(1, n_roi + 1)]
    return {
        "roi_timeseries": series,
        "connectivity": np.corrcoef(series.T).astype(np.float32),
        "tr": np.float64(2.0),
        "connectivity_kind": np.array("correlation"),
        "volume_index": np.arange(n_time),
        "n_volumes": np.int64(n_time),
        "structural_features": rng.standard_normal((n_roi, len(FEATURE_NAMES))).astype(np.float32),
        "feature_names": np.array(FEATURE_NAMES),
        "roi_labels": np.arange(1, n_roi + 1, dtype=np.int32),
        "roi_names": np.asarray(names, dtype=str),
        "roi_coords": rng.uniform(-60, 60, (n_roi, 3)).astype(np.float32),
    }


def read_tsvs(series_tsv: Path, relmat_tsv: Path, morph_tsv: Path, labels_tsv: Path) -> dict:
    """The arrays the shard stage needs, from the derivative TSVs."""
    table = pd.read_csv(series_tsv, sep="\t", na_values=["n/a"], dtype=np.float32)
    values = table.to_numpy()
    kept = ~np.isnan(values).any(axis=1)
    relmat = pd.read_csv(relmat_tsv, sep="\t", index_col=0)
    morph = pd.read_csv(morph_tsv, sep="\t", index_col=0)
    labels = pd.read_csv(labels_tsv, sep="\t")
    return {
        "roi_timeseries": values[kept],
        "volume_index": np.flatnonzero(kept),
        "n_volumes": len(values),
        "connectivity": relmat.to_numpy(dtype=np.float32),
        "structural_features": morph.to_numpy(dtype=np.float32),
        "feature_names": np.array(morph.columns),
        "roi_names": np.array(table.columns),
        "roi_labels": labels["index"].to_numpy(),
        "roi_coords": labels[["x", "y", "z"]].to_numpy(dtype=np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-time", type=int, default=150)
    parser.add_argument("--n-roi", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    arrays = subject_arrays(args.n_time, args.n_roi)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        npz = tmp / "sub-001_parcellated.npz"
        tsvs = [tmp / f"{name}.tsv" for name in ("timeseries", "relmat", "morph", "labels")]
        np.savez(npz, **arrays)
        write_tables(arrays, *tsvs[:3])
        labels = pd.DataFrame(arrays["roi_coords"], columns=["x", "y", "z"])
        labels.insert(0, "name", arrays["roi_names"])
        labels.insert(0, "index", arrays["roi_labels"])
        labels.to_csv(tsvs[3], sep="\t", index=False)
        a, b = _load_parcellated(npz), read_tsvs(*tsvs)  # same data both ways (and warm-up)
        assert np.allclose(a["roi_timeseries"], b["roi_timeseries"], atol=1e-5)
        assert np.allclose(a["connectivity"], b["connectivity"], atol=1e-5)
        t_npz = best(lambda: _load_parcellated(npz), args.repeat)
        t_tsv = best(lambda: read_tsvs(*tsvs), args.repeat)
        size_npz = npz.stat().st_size
        size_tsv = sum(p.stat().st_size for p in tsvs)
    print(f"subject: {args.n_time} volumes x {args.n_roi} ROIs, best of {args.repeat}")
    print(f"npz read: {1e3 * t_npz:8.3f} ms  ({size_npz / 1024:.1f} KiB)")
    print(f"tsv read: {1e3 * t_tsv:8.3f} ms  ({size_tsv / 1024:.1f} KiB, 4 files)")
    print(f"ratio tsv/npz: {t_tsv / t_npz:.1f}")


if __name__ == "__main__":
    main()
