"""SC -> FC on held-out synthetic subjects: the graph model against physics, ridge and the group mean.

The cohort is the synthetic generator with ``connectome: true`` at the regional
level: each subject's SC (:mod:`modalmerge.data.synthetic.connectome`), its
spontaneous activity from the Ornstein-Uhlenbeck network ``A = -I + g SC`` through
the HRF (:func:`modalmerge.data.synthetic.bold.spontaneous_activity`, the same
function the BOLD renderer calls), plus white measurement noise of SD
``--noise`` (relative to the signal's), and its observed FC the Pearson
correlation of that run. It skips the voxel rendering, preprocessing and
parcellation of the workflow (which the ``configs/connectome.yaml`` run would go
through), so the numbers are those of the regional model, not of the pipeline.

Subjects are split (seeded) into train / validation / test. The graph model
(``graph_transformer`` -> ``cross_attention`` -> ``bilinear``) trains on train with
early stopping on validation; its settings (learning rate, tangent space) are the
grid point with the lowest validation loss. Baselines: group-average FC, the
physics baseline (analytic OU FC from the subject's SC with one ``g`` fitted on
train) and ridge on PCA of SC edges (:mod:`modalmerge.evaluation.graph_targets`).
Every score is per test subject with a seeded bootstrap interval; the model is
compared with each baseline by the paired difference and its interval.

    nice -n 10 .venv/bin/python benchmarks/connectome_sc_fc.py --seed 2026 --out results/connectome
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from modalmerge.data.synthetic.anatomy import atlas_centroids, region_names
from modalmerge.data.synthetic.bold import spontaneous_activity
from modalmerge.data.synthetic.connectome import lyapunov_fc
from modalmerge.data.synthetic.factors import subject_truth
from modalmerge.data.synthetic.params import STREAM_BOLD, SyntheticParams, rng_for
from modalmerge.evaluation.graph_targets import baseline_predictions, graph_scores
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference, verdict
from modalmerge.models import MultiModalModel
from modalmerge.training.trainer import Trainer

SCORES = ("edge_r", "edge_mse", "fc_top1", "fc_mean_rank", "fc_demeaned_r")


def make_cohort(p: SyntheticParams, noise: float, seed: int) -> dict[str, np.ndarray]:
    """SC, observed FC and the neural FC truth ``(n, R, R)`` of every subject of ``p``."""
    sc, observed, neural = [], [], []
    for index in range(1, p.n_subjects + 1):
        truth = subject_truth(p, index)
        rng = rng_for(p, index, STREAM_BOLD)
        series = spontaneous_activity(
            p, truth.coupling, rng, (truth.connectome, truth.connectome_g)
        )
        series = series / series.std(0) + noise * rng.standard_normal(series.shape)
        sc.append(truth.connectome)
        observed.append(np.corrcoef(series.T))
        neural.append(lyapunov_fc(truth.connectome, truth.connectome_g))
    return {"sc": np.stack(sc), "fc": np.stack(observed), "fc_neural": np.stack(neural)}


def split(n: int, seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(0.25 * n), round(0.15 * n)
    return {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }


def loader(x: torch.Tensor, y: torch.Tensor, batch: int, shuffle: bool, seed: int) -> DataLoader:
    items = [{"condition": a, "target": b} for a, b in zip(x, y, strict=True)]
    g = torch.Generator().manual_seed(seed)
    return DataLoader(items, batch_size=batch, shuffle=shuffle, generator=g)


def train_graph_model(data, parts, sc_scale, lr, tangent, args):
    """Train one grid point; return (model, best validation loss)."""
    torch.manual_seed(args.seed)
    r = data["sc"].shape[1]
    x = torch.tensor(data["sc"] / sc_scale, dtype=torch.float32)
    y = torch.tensor(data["fc"], dtype=torch.float32)
    model = MultiModalModel(
        "graph", "graph", embedding_dim=args.dim, num_attention_heads=4,
        condition_shape=(r, r), target_shape=(r, r), dropout=0.1,
        encoder_options={"n_layers": 2}, decoder_options={"n_layers": 1, "tangent": tangent},
    )  # fmt: skip
    if tangent:
        model.decoder.set_tangent_reference(y[parts["train"]])
    trainer = Trainer(model, lr=lr, patience=15, device="cpu", seed=args.seed, progress=False)
    history = trainer.train(
        loader(x[parts["train"]], y[parts["train"]], 8, True, args.seed),
        loader(x[parts["val"]], y[parts["val"]], 64, False, args.seed),
        epochs=args.epochs,
    )
    return model.eval(), float(history["val_loss"].min())


def summarise(scores: dict[str, dict[str, np.ndarray]], seed: int) -> pd.DataFrame:
    rows = []
    for name, per_subject in scores.items():
        for metric in SCORES:
            low, high = bootstrap_ci(per_subject[metric], seed=seed)
            rows.append({"predictor": name, "metric": metric, "mean": per_subject[metric].mean(),
                         "ci_low": low, "ci_high": high})  # fmt: skip
    return pd.DataFrame(rows)


def differences(scores, model: str, seed: int) -> pd.DataFrame:
    rows = []
    for baseline, metric in itertools.product(
        [b for b in scores if b != model], ("edge_r", "fc_demeaned_r", "edge_mse")
    ):
        sign = -1.0 if metric == "edge_mse" else 1.0  # lower MSE is better: baseline - model
        d = paired_difference(sign * scores[model][metric], sign * scores[baseline][metric], seed)
        rows.append({"model": model, "baseline": baseline, "metric": metric, "difference": d.value,
                     "ci_low": d.ci_low, "ci_high": d.ci_high, "n": d.n, "verdict": verdict(d)})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026, help="cohort, split and training seed")
    parser.add_argument("--subjects", type=int, default=64)
    parser.add_argument("--regions", type=int, default=32)
    parser.add_argument("--timepoints", type=int, default=400)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/connectome"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = SyntheticParams(seed=args.seed, n_subjects=args.subjects, n_regions=args.regions,
                        n_timepoints=args.timepoints, connectome=True)  # fmt: skip
    data = make_cohort(p, args.noise, args.seed)
    parts = split(args.subjects, args.seed)
    train, test = parts["train"], parts["test"]
    sc_scale = float(data["sc"][train].mean())  # SC edges to ~1 for the encoder

    grid = [(lr, tangent) for lr in (1e-3, 3e-3) for tangent in (False, True)]
    fitted = []
    for lr, tangent in grid:
        model, val_loss = train_graph_model(data, parts, sc_scale, lr, tangent, args)
        fitted.append((val_loss, lr, tangent, model))
        print(f"lr={lr:g} tangent={tangent}: best validation loss {val_loss:.4f}", flush=True)
    val_loss, lr, tangent, model = min(fitted, key=lambda item: item[0])
    with torch.no_grad():
        x = torch.tensor(data["sc"][test] / sc_scale, dtype=torch.float32)
        predicted = model(x).prediction.double().numpy()
    predicted = 0.5 * (predicted + predicted.transpose(0, 2, 1))
    for m in predicted:
        np.fill_diagonal(m, 1.0)

    predictions, g = baseline_predictions(data["sc"][train], data["fc"][train], data["sc"][test])
    predictions = {"graph_transformer": predicted, **predictions}
    mean_fc = data["fc"][train].mean(0)
    scores = {k: graph_scores(v, data["fc"][test], mean_fc) for k, v in predictions.items()}
    table = summarise(scores, args.seed)
    diffs = differences(scores, "graph_transformer", args.seed)
    truth_r = graph_scores(data["fc_neural"][test], data["fc"][test], mean_fc)["edge_r"]

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "sc_fc_scores.csv", index=False)
    diffs.to_csv(args.out / "sc_fc_differences.csv", index=False)
    np.savez_compressed(args.out / "sc_fc_predictions.npz", sc=data["sc"][test],
                        fc=data["fc"][test], **predictions)  # fmt: skip
    meta = {"seed": args.seed, "subjects": args.subjects, "regions": args.regions,
            "timepoints": args.timepoints, "noise": args.noise, "n_train": len(train),
            "n_val": len(parts["val"]), "n_test": len(test), "chosen_lr": lr,
            "chosen_tangent": tangent, "val_loss": val_loss, "physics_g": g,
            "ceiling_edge_r_of_neural_truth": float(truth_r.mean()), "torch": torch.__version__}  # fmt: skip
    (args.out / "sc_fc_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if args.out.exists():
        from modalmerge.viz.connectome import plot_sc_fc_prediction

        plot_sc_fc_prediction(
            data["sc"][test[0]], data["fc"][test[0]], predicted[0], region_names(p),
            atlas_centroids(p), output=args.out / "sc_fc_subject.png",
        )  # fmt: skip
    print(json.dumps(meta, indent=2))
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(diffs.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
