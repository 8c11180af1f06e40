"""Draw one experiment's figures from its model, history and test-set predictions.

Writes into ``figures/<experiment>/``:

- ``learning_curves.png`` — training and validation loss per epoch;
- time-series targets: ``predictions.png`` (predicted, group-mean and true ROI
  series of the first test subject) and ``connectivity.png`` (true against
  predicted connectivity, mean over test subjects);
- image targets: ``image_prediction.png``; tabular targets: ``tabular_prediction.png``;
- cross-attention models: ``attention.png`` (the Visualizer's view of one test
  sample) and, for image conditions, ``attention_on_anatomy.png`` (the mean
  attention of all target queries drawn on the subject's anatomy with nilearn).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from modalmerge.data.dataset import ShardDataset
from modalmerge.data.split_arrays import read_manifest
from modalmerge.evaluation.metrics import connectivity
from modalmerge.io import InputError, require_file
from modalmerge.stages.common import TEXT_MAX_LENGTH, load_experiment_model
from modalmerge.viz import figures as fig_lib
from modalmerge.viz.attention import project_to_image, select_heads
from modalmerge.viz.predictions import (
    plot_image_prediction,
    plot_tabular_prediction,
    plot_timeseries_prediction,
)
from modalmerge.viz.visualizer import Visualizer

log = logging.getLogger(__name__)

#: Metrics drawn in the summary chart (higher is better for each).
SUMMARY_METRICS = ("pearson_r", "fc_similarity", "r2", "ssim", "psnr", "accuracy")


def _roi_labels(labels_path: str | Path) -> list[str]:
    table = pd.read_csv(require_file(labels_path, "atlas labels"), sep="\t")
    if "name" not in table:
        raise InputError(labels_path, "atlas labels need a 'name' column")
    return [str(n) for n in table["name"]]


def _load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    require_file(path, "predictions")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable predictions file ({exc})") from exc


def _anatomy_affine(atlas_path: str | Path, image_shape: tuple[int, ...]) -> np.ndarray:
    """Affine of the shards' anatomy: the atlas grid, scaled when the shards downsampled it."""
    atlas = nib.load(require_file(atlas_path, "atlas"))
    factors = np.asarray(atlas.shape[:3], dtype=float) / np.asarray(image_shape, dtype=float)
    affine = atlas.affine.copy()
    affine[:3, :3] = affine[:3, :3] * factors[None, :]
    return affine


def draw_experiment_figures(
    model_path,
    history_path,
    predictions_path,
    metrics_path,
    shard_dir,
    atlas_path,
    labels_path,
    experiment: dict,
    settings: dict,
    out_dir,
) -> list[Path]:
    """Draw every figure that applies to ``experiment``; returns the written paths."""
    require_file(metrics_path, "metrics")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dpi = int(settings.get("dpi", 110))
    written = []

    def save(fig, name):
        written.append(fig_lib.save_figure(fig, out_dir / f"{name}.png", dpi=dpi))

    history = pd.read_csv(require_file(history_path, "training history"))
    save(fig_lib.learning_curves(history), "learning_curves")

    arrays = _load_predictions(predictions_path)
    roi_labels = _roi_labels(labels_path)
    target = experiment["target"]
    if target == "time_series":
        pred, true, group = arrays["prediction"], arrays["target"], arrays["group_mean"]
        n_rois = min(int(settings.get("n_rois", 4)), true.shape[-1])
        names = roi_labels if len(roi_labels) == true.shape[-1] else None
        save(
            plot_timeseries_prediction(
                pred[0], true[0], roi_labels=names, rois=range(n_rois), baseline=group[0]
            ),
            "predictions",
        )
        true_fc = np.mean([connectivity(t) for t in true], axis=0)
        pred_fc = np.mean([connectivity(p) for p in pred], axis=0)
        save(fig_lib.connectivity_comparison(true_fc, pred_fc, labels=names), "connectivity")
    elif target == "image":
        save(
            plot_image_prediction(arrays["prediction"][0], arrays["target"][0]), "image_prediction"
        )

    model, tokenizer = load_experiment_model(model_path)
    if target == "tabular":
        table = read_manifest(shard_dir)["tabular"]
        save(
            plot_tabular_prediction(
                arrays["prediction"],
                arrays["target"],
                table["columns"],
                categorical=table["categorical"],
            ),
            "tabular_prediction",
        )
    if experiment.get("method", "cross_attention") == "cross_attention":
        _attention_figures(model, tokenizer, shard_dir, atlas_path, experiment, save)
    log.info("wrote %d figures to %s", len(written), out_dir)
    return written


@torch.no_grad()
def _attention_figures(model, tokenizer, shard_dir, atlas_path, experiment, save) -> None:
    dataset = ShardDataset(
        shard_dir,
        "test",
        experiment["condition"],
        experiment["target"],
        tokenizer=tokenizer,
        text_max_length=TEXT_MAX_LENGTH,
    )
    if len(dataset) == 0:
        raise InputError(shard_dir, "the test split has no samples to draw attention for")
    sample = dataset[0]
    dataset.close()
    offset = int(sample["window_start"])
    save(Visualizer.plot_attention(model, sample["condition"], time_offset=offset), "attention")
    if experiment["condition"] != "image" or sample["condition"].ndim != 4:
        return
    x = sample["condition"][None]
    output = model(x, time_offset=torch.as_tensor([offset]), return_attention=True)
    weights = select_heads(output.attention[0].numpy()).mean(axis=0)  # all target queries
    provenance = model.condition_provenance()
    image = sample["condition"][0].numpy()
    volume = project_to_image(weights, provenance.grid_shape, image.shape)
    affine = _anatomy_affine(atlas_path, image.shape)
    save(
        fig_lib.attention_on_anatomy(
            volume,
            image,
            affine,
            title=f"{experiment['name']}: mean attention, subject {sample['subject']}",
        ),
        "attention_on_anatomy",
    )


def draw_summary_chart(summary_csv, settings: dict, out_path) -> Path:
    """Each experiment against its baselines, per metric."""
    summary = pd.read_csv(require_file(summary_csv, "summary table"))
    summary = summary[summary["metric"].isin(SUMMARY_METRICS)]
    if summary.empty:
        raise InputError(summary_csv, f"no rows with any of the metrics {SUMMARY_METRICS}")
    fig = fig_lib.summary_chart(summary)
    return fig_lib.save_figure(fig, out_path, dpi=int(settings.get("dpi", 110)))
