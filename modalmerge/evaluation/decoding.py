"""Brain decoding: the task condition of each volume of a 4D window, scored per held-out subject.

The target is the window's ``task_condition`` (shards with ``shard.volume_series``), read
as a table of T categorical columns (one per volume, K classes: rest and the trial
types): a :class:`~modalmerge.models.MultiModalModel` from ``volume_series``
(``spatiotemporal`` encoder) to ``tabular`` (``mlp`` decoder: one query and one
classification head per volume) predicts every volume's condition from the whole
window. It is compared, on the same test windows, with

- ``logistic``: multinomial logistic regression (scikit-learn) from the volume's ROI
  vector (the parcellated series of the same window, z-scored with the training
  volumes' statistics), its C chosen on the validation subjects;
- ``logistic_context``: the same from the ROI vectors of the volume and its two
  neighbours on each side (edge-padded within the window), so the baseline too sees
  the hemodynamic time course around the volume;
- ``chance``: the training volumes' most frequent condition for every volume.

Scores: accuracy per held-out subject (the mean over its windows' volumes), the seeded
bootstrap interval over subjects and the paired difference model - baseline with its
interval and verdict (:mod:`modalmerge.evaluation.intervals`). The model's settings are
chosen from a small grid by validation accuracy; the test split is read once, at the end.

Run on shards written with ``shard.volume_series.enabled`` (``configs/decoding.yaml``)::

    python -m modalmerge.evaluation.decoding results/decoding/shards --out results/decoding/decode
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from modalmerge.data.shards.dataset import ShardDataset, collate_samples
from modalmerge.data.shards.split_arrays import read_manifest
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference, verdict
from modalmerge.io import InputError, atomic_path
from modalmerge.models import MultiModalModel
from modalmerge.training.trainer import Trainer

#: the model grid searched on validation accuracy (small: a CPU run of minutes on a shared
#: machine): one block of divided space-time attention over 6^3 patches, one token per
#: volume or per pair of volumes
GRID = (
    {"n_layers": 1, "patch": 6, "time_patch": 1},
    {"n_layers": 1, "patch": 6, "time_patch": 2},
)
C_GRID = (0.01, 0.1, 1.0, 10.0)
CONTEXT = 2  # volumes on each side for logistic_context


def _split(shard_dir: Path, split: str, condition: str) -> ShardDataset:
    return ShardDataset(shard_dir, split, condition, "task_condition")


def _arrays(dataset: ShardDataset) -> dict:
    """Every sample of ``dataset`` as one batch (condition, target codes, subjects)."""
    batch = dataset.get_batch(np.arange(len(dataset)))
    return {
        "x": batch["condition"].numpy(),
        "y": batch["target"].numpy().astype(np.int64),
        "subject": np.asarray(batch["subject"]),
    }


def per_subject_accuracy(correct: np.ndarray, subjects: np.ndarray) -> dict[str, float]:
    """Mean of ``correct`` (n_windows, T) bool per subject (its windows' volumes)."""
    return {s: float(correct[subjects == s].mean()) for s in sorted(set(subjects.tolist()))}


def _context_features(x: np.ndarray, k: int) -> np.ndarray:
    """(n, T, R) -> (n, T, (2k + 1) R): each volume with its k neighbours per side."""
    padded = np.pad(x, ((0, 0), (k, k), (0, 0)), mode="edge")
    t = x.shape[1]
    return np.concatenate([padded[:, j : j + t] for j in range(2 * k + 1)], axis=2)


def logistic_baseline(train: dict, val: dict, test: dict, context: int) -> tuple[np.ndarray, dict]:
    """Per-volume logistic regression on ROI vectors; C by validation accuracy.

    Returns the test predictions (n_windows, T) and ``{"C": ..., "val_accuracy": ...}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def rows(d: dict) -> tuple[np.ndarray, np.ndarray]:
        x = _context_features(d["x"], context) if context else d["x"]
        return x.reshape(-1, x.shape[-1]), d["y"].reshape(-1)

    (xt, yt), (xv, yv), (xs, _) = rows(train), rows(val), rows(test)
    best = None
    for c in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        clf.fit(xt, yt)
        acc = float((clf.predict(xv) == yv).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc, c, clf = best
    return clf.predict(xs).reshape(test["y"].shape), {"C": c, "val_accuracy": acc}


def _loader(dataset: ShardDataset, batch_size: int, shuffle: bool, seed: int):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_samples,
    )


@torch.no_grad()
def predict_conditions(model: MultiModalModel, dataset: ShardDataset) -> np.ndarray:
    """(n_windows, T) predicted condition codes (argmax of each volume's head)."""
    model.eval()
    out = []
    for batch in _loader(dataset, 32, False, 0):
        heads = model(batch["condition"]).prediction["categorical"]  # T x (B, K)
        out.append(torch.stack([h.argmax(-1) for h in heads], dim=1).numpy())
    return np.concatenate(out)


def build_decoder(shape: tuple[int, ...], n_classes: int, dim: int, options: dict):
    """volume_series window -> one K-way head per volume (a table of T categorical columns)."""
    return MultiModalModel(
        "volume_series",
        "tabular",
        condition_encoder="spatiotemporal",
        target_decoder="mlp",
        embedding_dim=dim,
        num_attention_heads=4,
        conditioning="cross_attention",
        condition_shape=shape,
        n_numeric=0,
        categorical_cardinalities=[n_classes] * shape[0],
        dropout=0.1,
        encoder_options=options,
    )


def run_decoding(
    shard_dir: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    epochs: int = 10,
    dim: int = 32,
    grid: tuple[dict, ...] = GRID,
) -> dict:
    """Train the grid on train, pick by validation accuracy, score test; write metrics.json.

    Returns the metrics dict (also written to ``out_dir/metrics.json``, with the
    per-subject accuracies in ``out_dir/per_subject.csv``).
    """
    # Over 60 lines: the experiment in order (data, model grid, baselines, scores, files).
    shard_dir, out_dir = Path(shard_dir), Path(out_dir)
    manifest = read_manifest(shard_dir)
    spec = manifest.get("volume_series")
    if not spec or not spec.get("task_conditions"):
        raise InputError(
            shard_dir / "manifest.json",
            "no task conditions: write the shards with shard.volume_series.enabled and an "
            "events table",
        )
    names = spec["task_conditions"]
    shape = tuple(manifest["shapes"]["volume_series"])
    torch.manual_seed(seed)
    volumes = {s: _split(shard_dir, s, "volume_series") for s in ("train", "val", "test")}
    rois = {s: _arrays(_split(shard_dir, s, "time_series")) for s in ("train", "val", "test")}
    val_y = rois["val"]["y"]
    results, started = [], time.time()
    for k, options in enumerate(grid):
        torch.manual_seed(seed + k)
        model = build_decoder(shape, len(names), dim, dict(options))
        trainer = Trainer(model, lr=3e-3, patience=4, seed=seed + k, progress=False)
        history = trainer.train(
            _loader(volumes["train"], 16, True, seed + k), _loader(volumes["val"], 32, False, 0),
            epochs,
        )  # fmt: skip
        val_acc = float((predict_conditions(model, volumes["val"]) == val_y).mean())
        results.append({"options": dict(options), "val_accuracy": val_acc,
                        "epochs_run": len(history), "model": model})  # fmt: skip
    best = max(results, key=lambda r: r["val_accuracy"])  # first on ties
    test = rois["test"]
    subjects = test["subject"]
    predictions = {"model": predict_conditions(best["model"], volumes["test"])}
    chosen = {}
    predictions["logistic"], chosen["logistic"] = logistic_baseline(
        rois["train"], rois["val"], test, 0
    )
    predictions["logistic_context"], chosen["logistic_context"] = logistic_baseline(
        rois["train"], rois["val"], test, CONTEXT
    )
    majority = int(np.bincount(rois["train"]["y"].ravel(), minlength=len(names)).argmax())
    predictions["chance"] = np.full_like(test["y"], majority)
    per_unit = {
        name: per_subject_accuracy(pred == test["y"], subjects)
        for name, pred in predictions.items()
    }
    units = sorted(per_unit["model"])
    metrics = {
        "target": "task_condition of each volume (categorical)",
        "conditions": names,
        "window_shape": list(shape),
        "n_test_subjects": len(units),
        "n_test_windows": int(len(subjects)),
        "grid": [{k: v for k, v in r.items() if k != "model"} for r in results],
        "chosen": {"model": best["options"], **chosen, "chance": {"class": names[majority]}},
        "n_parameters": best["model"].n_parameters(),
        "seconds": round(time.time() - started, 1),
        "accuracy": {},
        "differences": {},
        "per_unit": {name: [per_unit[name][u] for u in units] for name in per_unit},
        "units": units,
    }
    for name in per_unit:
        values = metrics["per_unit"][name]
        low, high = bootstrap_ci(values)
        metrics["accuracy"][name] = {"mean": float(np.mean(values)), "ci": [low, high]}
    for base in ("logistic", "logistic_context", "chance"):
        for a in ("model", "logistic", "logistic_context"):
            if a == base:
                continue
            diff = paired_difference(metrics["per_unit"][a], metrics["per_unit"][base])
            metrics["differences"][f"{a}-{base}"] = {
                "mean": diff.value, "ci": [diff.ci_low, diff.ci_high], "n": diff.n,
                "p_wilcoxon": diff.p_wilcoxon, "verdict": verdict(diff),
            }  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2))
    lines = ["subject," + ",".join(per_unit)] + [
        f"{u}," + ",".join(f"{per_unit[n][u]:.4f}" for n in per_unit) for u in units
    ]
    with atomic_path(out_dir / "per_subject.csv") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    best["model"].save(out_dir / "model.pt")
    draw_attention(best["model"], volumes["test"], test["y"], names, out_dir / "attention.png")
    return metrics


@torch.no_grad()
def draw_attention(model, dataset: ShardDataset, codes: np.ndarray, names, path: Path) -> Path:
    """Attention of the first test window holding a task volume: that volume's query over the
    window's space-time tokens (mean over heads), on orthogonal slices for four volumes."""
    from modalmerge.viz.volume_attention import plot_space_time_attention

    model.eval()
    task = np.flatnonzero((codes > 0).any(axis=1))
    k = int(task[0]) if len(task) else 0
    t = int(np.flatnonzero(codes[k] > 0)[0]) if len(task) else 0
    window = dataset.get_batch([k])["condition"]
    attention = model(window, return_attention=True).attention  # (1, heads, T, n_tokens)
    weights = attention[0].mean(0)[t]
    subject = dataset.get_batch([k])["subject"][0]
    title = f"{subject}, test window {k}: query of volume {t} ({names[codes[k, t]]})"
    prov = model.condition_provenance()
    return plot_space_time_attention(weights, prov, window[0], path=path, title=title)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args(argv)
    torch.set_num_threads(a.threads)
    metrics = run_decoding(a.shards, a.out, a.seed, a.epochs, a.dim)
    for name, score in metrics["accuracy"].items():
        print(
            f"{name:18s} accuracy {score['mean']:.3f} [{score['ci'][0]:.3f}, {score['ci'][1]:.3f}]"
        )
    for name, d in metrics["differences"].items():
        print(f"{name:28s} {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] {d['verdict']}")


if __name__ == "__main__":
    main()
