"""Draw one experiment's figures from its model, history and test-set predictions.

Writes into ``figures/<experiment>/``:

- ``learning_curves.png`` — training and validation loss per epoch;
- time-series targets: ``predictions.png`` (predicted, group-mean and true ROI
  series of the first test subject), ``connectivity.png`` (true against
  predicted connectivity, mean over test subjects) and ``connectome_true.png``
  / ``connectome_predicted.png`` (each matrix beside its glass-brain connectome
  at the atlas coordinates, one colour scale);
- image targets: ``image_prediction.png`` (a generative model's also ``image_samples.png``:
  truth, sample mean and samples); tabular targets: ``tabular_prediction.png``;
- ``volume_series`` targets: ``volume_prediction.png`` (the first held-out window's middle
  axial slice at five of its volumes: truth, group mean, prediction; a generative model's
  ensemble mean and two of its samples);
- time-series targets on an fsaverage5 surface atlas: ``surface_accuracy.png``
  (the model's Pearson r per region on the inflated surface) and, when
  evaluate measured homolog attention, ``surface_attention.png`` (the
  best-predicted target region's mean attention over the condition regions);
- region samples (group data, e.g. ``brainspace_group``): ``profiles.png``
  (true and predicted profiles of the held-out regions: model, ridge, mean),
  ``surface_split.png`` (which regions trained, validated, tested or were
  left out by the buffer), ``surface_accuracy.png`` (each held-out region's
  profile r) and, with cross-attention, ``surface_attention.png`` (the mean
  attention of the target columns on each region's condition column);
- cross-attention models: ``attention.png`` (the Visualizer's view of one test
  sample) and, for image conditions, ``attention_on_anatomy.png`` (the mean
  attention of all target queries drawn on the subject's anatomy with nilearn;
  with ``region_cnn`` tokens each atlas region is painted with its weight);
  for point-cloud conditions ``attention_on_surface.png`` (the same mean attention
  on the subject's surface cloud: each point coloured by its centroid token's weight);
  for ``volume_series`` conditions ``attention_on_volumes.png`` (a query's attention on
  orthogonal slices of a test window for four of its volumes; brain decoding: the query
  of a task volume). A brain-decoding experiment (``target_data: task_condition``) has no
  ``tabular_prediction.png`` (its columns are volumes, not the participants table).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from modalmerge.data.parcellation.labels import read_labels
from modalmerge.data.shards.split_arrays import (
    read_manifest,
    roi_columns,
    roi_labels,
    roi_names,
    table_columns,
)
from modalmerge.evaluation.metrics import connectivity
from modalmerge.io import InputError, load_arrays, require_file
from modalmerge.models.conditioning import returns_attention
from modalmerge.settings import ExperimentSettings, FiguresSettings
from modalmerge.stages.common import experiment_dataset, load_experiment_model
from modalmerge.stages.figures_modalities import (
    point_cloud_attention,
    sample_figures,
    volume_attention,
    volume_rows_figure,
)
from modalmerge.viz import figures as fig_lib
from modalmerge.viz.attention import project_to_image, select_heads
from modalmerge.viz.predictions import (
    plot_image_prediction,
    plot_tabular_prediction,
    plot_timeseries_prediction,
)
from modalmerge.viz.samples import IMAGE_SAMPLES, image_samples_beside_truth
from modalmerge.viz.visualizer import Visualizer

log = logging.getLogger(__name__)

#: Surface meshes an atlas image of shape (2 * V, 1, 1) may live on, by V (per hemisphere).
SURFACE_MESHES = {10242: "fsaverage5", 32492: "conte69"}

#: Metrics drawn in the summary chart (higher is better for each).
SUMMARY_METRICS = (
    *("pearson_r", "fc_similarity", "fc_demeaned_r", "r2", "ssim", "psnr", "accuracy"),
    "token_accuracy",
    *("edge_r", "feature_r", "fscore"),  # graph, point-cloud values and generated point sets
)


def _roi_labels(labels_path: str | Path) -> list[str]:
    return read_labels(labels_path)["name"].tolist()


def _roi_coordinates(manifest: dict, columns) -> np.ndarray | None:
    """Atlas centres (mm) of the target ROIs from the shards' ``roi_coords``; None when
    unknown (shards without coordinates, NaN centres)."""
    coords = manifest.get("roi_coords")
    if coords is None:
        return None
    coords = np.asarray(coords, dtype=float)
    coords = coords if columns is None else coords[columns]
    return coords if np.isfinite(coords).all() else None


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
    experiment: ExperimentSettings | dict,
    settings: FiguresSettings | dict | None,
    out_dir,
) -> list[Path]:
    """Draw every figure that applies to ``experiment``; returns the written paths.

    ``experiment`` and ``settings``: settings objects or their config mappings.
    """
    # Over 60 lines: the dispatch of every figure that applies to an experiment.
    experiment = ExperimentSettings.coerce(experiment)
    settings = FiguresSettings.coerce(settings)
    require_file(metrics_path, "metrics")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dpi = settings.dpi
    written = []

    def save(fig, name):
        written.append(fig_lib.save_figure(fig, out_dir / f"{name}.png", dpi=dpi))

    history = pd.read_csv(require_file(history_path, "training history"))
    save(fig_lib.learning_curves(history), "learning_curves")

    arrays = load_arrays(predictions_path)
    atlas_names = _roi_labels(labels_path)
    target = experiment.target
    if target == "time_series":
        pred, true, group = arrays["prediction"], arrays["target"], arrays["group_mean"]
        n_rois = min(settings.n_rois, true.shape[-1])
        manifest = read_manifest(shard_dir)
        target_columns = roi_columns(manifest, experiment.target_rois)
        if target_columns is not None:
            atlas_names = roi_names(manifest, target_columns)
        names = atlas_names if len(atlas_names) == true.shape[-1] else None
        save(
            plot_timeseries_prediction(
                pred[0], true[0], roi_labels=names, rois=range(n_rois), baseline=group[0]
            ),
            "predictions",
        )
        true_fc = np.mean([connectivity(t) for t in true], axis=0)
        pred_fc = np.mean([connectivity(p) for p in pred], axis=0)
        save(fig_lib.connectivity_comparison(true_fc, pred_fc, labels=names), "connectivity")
        coords = _roi_coordinates(manifest, target_columns)
        if coords is not None:
            from modalmerge.viz.connectome import plot_connectivity

            limit = float(np.abs(true_fc - np.diag(np.diag(true_fc))).max()) or 1.0
            for name, matrix in (("true", true_fc), ("predicted", pred_fc)):
                save(
                    plot_connectivity(
                        matrix, labels=names, coords=coords, vmax=limit,
                        title=f"{experiment.name}: {name} FC of the test subjects (mean)",
                    ),
                    f"connectome_{name}",
                )  # fmt: skip
        surface_atlas = _surface_atlas(atlas_path)
        if surface_atlas is not None and surface_atlas[1] == "fsaverage5":
            _surface_figures(
                metrics_path, manifest, surface_atlas[0], target_columns, experiment, save
            )
    elif target == "image":
        save(
            # first test subject, first target channel
            plot_image_prediction(arrays["prediction"][0][0], arrays["target"][0][0]),
            "image_prediction",
        )
    elif target == "graph":
        _graph_figures(arrays, read_manifest(shard_dir), experiment, save)
    elif target == "point_cloud":  # first held-out subject: true above predicted/generated
        from modalmerge.viz.point_cloud import cloud_prediction

        names = read_manifest(shard_dir).get("point_cloud", {}).get("feature_names") or []
        save(
            cloud_prediction(
                arrays["target"][0], arrays["prediction"][0],
                feature=names[0] if names else "feature 0",
                title=f"{experiment.name}: held-out {arrays['subjects'][0]}",
            ),
            "point_cloud_prediction",
        )  # fmt: skip

    elif target == "volume_series":  # first held-out window on a slice over time
        save(volume_rows_figure(arrays, experiment.name), "volume_prediction")

    model, tokenizer = load_experiment_model(model_path, experiment.plugins)
    if target == "tabular" and experiment.target_data is None:
        manifest = read_manifest(shard_dir)
        if manifest.get("sample_unit") == "region" and "target_raw" in arrays:
            # hundreds of profile columns: matrices and surfaces instead of one scatter each
            _region_figures(arrays, metrics_path, manifest, atlas_path, experiment, save)
        else:
            table = manifest["tabular"]
            picked = table_columns(manifest, experiment.target_columns)
            names = table["columns"] if picked is None else [table["columns"][i] for i in picked]
            save(
                plot_tabular_prediction(
                    arrays["prediction"],
                    arrays["target"],
                    names,
                    categorical=[c for c in table["categorical"] if c in names],
                ),
                "tabular_prediction",
            )
    if model.generative and target == "time_series" and "samples" in arrays:
        sample_figures(model, arrays, shard_dir, experiment, save)
    if model.generative and target == "image" and "samples" in arrays:
        save(image_samples_beside_truth(*(arrays[k] for k in IMAGE_SAMPLES)), "image_samples")
    # cross_attention, spatial_mix, diffusion; MONAI's U-Net denoiser returns no weights
    monai_unet = getattr(model.decoder, "uses_monai_inferer", False)
    if returns_attention(experiment.method) and not monai_unet:
        _attention_figures(model, tokenizer, shard_dir, atlas_path, experiment, save)
        if experiment.condition == "volume_series":  # space-time tokens on the window's slices
            volume_attention(model, experiment, shard_dir, save)
    log.info("wrote %d figures to %s", len(written), out_dir)
    return written


@torch.no_grad()
def _attention_figures(model, tokenizer, shard_dir, atlas_path, experiment, save) -> None:
    dataset = experiment_dataset(shard_dir, "test", experiment, tokenizer)
    if len(dataset) == 0:
        raise InputError(shard_dir, "the test split has no samples to draw attention for")
    sample = dataset[0]
    dataset.close()
    offset = int(sample["window_start"])
    # a point-cloud target's queries are built from its points (the values decoder)
    given = sample["target"] if experiment.target == "point_cloud" else None
    save(
        Visualizer.plot_attention(model, sample["condition"], time_offset=offset, target=given),
        "attention",
    )
    if experiment.condition == "point_cloud":
        point_cloud_attention(model, sample, offset, experiment, save)
        return
    if experiment.condition != "image" or sample["condition"].ndim != 4:
        return
    x = sample["condition"][None]
    output = model(
        x,
        target=None if given is None else given[None],
        time_offset=torch.as_tensor([offset]),
        return_attention=True,
    )
    weights = select_heads(output.attention[0].numpy()).mean(axis=0)  # all target queries
    provenance = model.condition_provenance()
    image = sample["condition"][0].numpy()
    if provenance.kind == "region":  # region tokens: each region's weight painted on the atlas
        labels = sample["condition"][-1].numpy().round().astype(np.int64)
        volume = np.where(labels > 0, weights[np.clip(labels - 1, 0, len(weights) - 1)], 0.0)
    else:
        volume = project_to_image(weights, provenance.grid_shape, image.shape)
    affine = _anatomy_affine(atlas_path, image.shape)
    save(
        fig_lib.attention_on_anatomy(
            volume,
            image,
            affine,
            title=f"{experiment.name}: mean attention, subject {sample['subject']}",
        ),
        "attention_on_anatomy",
    )


def _graph_figures(arrays, manifest, experiment, save) -> None:
    """First held-out subject: condition | true | predicted matrix with glass brains."""
    from modalmerge.viz.connectome import plot_connectivity, plot_sc_fc_prediction

    names = manifest.get("roi_names")
    coords = _roi_coordinates(manifest, None)
    true, pred = arrays["target"][0], arrays["prediction"][0]
    subject = str(arrays["subjects"][0])
    nodes = manifest.get("subgraphs", {}).get("nodes", {}).get(subject)
    if nodes is not None:  # a local sub-graph of region data: its own nodes and centroids
        names = nodes
        coords = np.array([manifest["regions"][r]["xyz"] for r in nodes], dtype=float)
    if coords is not None and len(coords) != len(true):
        coords = None
    if "condition" in arrays:  # a graph condition (SC -> FC): the three side by side
        view = experiment.condition_graph or "fc"
        save(
            plot_sc_fc_prediction(
                arrays["condition"][0], true, pred, names, coords,
                title=f"{experiment.name}: held-out {subject}",
                condition_title={"sc": "structural connectome", "mpc": "MPC (condition)"}.get(
                    view, f"condition graph ({view})"),
            ),
            "graph_prediction",
        )  # fmt: skip
        return
    limit = float(np.abs(true - np.diag(np.diag(true))).max()) or 1.0
    for name, matrix in (("true", true), ("predicted", pred)):
        save(
            plot_connectivity(matrix, labels=names, coords=coords, vmax=limit,
                              title=f"{experiment.name}: {name}, held-out {subject}"),
            f"graph_{name}",
        )  # fmt: skip


def _surface_atlas(atlas_path) -> tuple[np.ndarray, str] | None:
    """Per-vertex labels and mesh name of a surface atlas stored as a (2V, 1, 1)
    image (fsaverage5 or conte69, left hemisphere first); None for a volume atlas."""
    image = nib.load(require_file(atlas_path, "atlas"))
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[1:] != (1, 1) or shape[0] % 2:
        return None
    if shape[0] // 2 not in SURFACE_MESHES:
        return None
    return np.asarray(image.dataobj).astype(np.int64).ravel(), SURFACE_MESHES[shape[0] // 2]


def _hemisphere_of(vertex_labels: np.ndarray, label: int) -> str:
    return "left" if label in _left_labels(vertex_labels) else "right"


def _left_labels(vertex_labels: np.ndarray) -> set[int]:
    """Region labels painted on the left half of the vertices (left hemisphere first)."""
    return set(np.unique(vertex_labels[: len(vertex_labels) // 2]).tolist())


def _halves(vertex: np.ndarray) -> dict[str, np.ndarray]:
    n = len(vertex) // 2
    return {"left": vertex[:n], "right": vertex[n:]}


def _region_map(values, labels, vertex, mesh, **kwargs):
    """``surface.surface_region_map`` of one value per region label, both hemispheres as given."""
    from modalmerge.viz import surface

    labels = np.asarray(labels, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    left = _left_labels(vertex)  # one pass over the vertices, not one per region
    by_hemi: dict[str, list[int]] = {"left": [], "right": []}
    for i, label in enumerate(labels.tolist()):
        by_hemi["left" if label in left else "right"].append(i)
    hemis = [h for h in ("left", "right") if by_hemi[h]]
    halves = _halves(vertex)
    return surface.surface_region_map(
        {h: values[by_hemi[h]] for h in hemis},
        {h: halves[h] for h in hemis},
        {h: labels[by_hemi[h]] for h in hemis},
        mesh=mesh,
        **kwargs,
    )


def _region_figures(arrays, metrics_path, manifest, atlas_path, experiment, save) -> None:
    """Region samples: held-out profiles as matrices, the split and accuracy on the surface."""
    # Over 60 lines: the profile and surface figures of region samples share their tables.
    from modalmerge.evaluation.summary import read_metrics

    record = read_metrics(metrics_path)
    regions = [str(r) for r in arrays["subjects"]]
    predictions = {
        name: arrays[f"{name}_raw"]
        for name in ("model", "ridge", "group_mean")
        if f"{name}_raw" in arrays
    }
    save(
        fig_lib.profile_matrices(
            arrays["target_raw"],
            predictions,
            regions,
            title=f"{experiment.name}: profiles of the held-out regions",
            row_r={k: v["pearson_r"] for k, v in record["scores"].items() if "pearson_r" in v},
        ),
        "profiles",
    )
    surface_atlas = _surface_atlas(atlas_path)
    if surface_atlas is None:
        return
    vertex, mesh = surface_atlas
    info = manifest.get("regions", {})
    split_of = {r: i for i, split in enumerate(("train", "val", "test"))
                for r in manifest["splits"][split]}  # fmt: skip
    split_of.update({r: 3 for r in manifest.get("excluded", [])})
    names = [r for r in info if r in split_of]
    save(
        _region_map(
            [split_of[r] for r in names],
            [info[r]["label"] for r in names],
            vertex,
            mesh,
            title="regions: 0 train, 1 val, 2 test, 3 left out (buffer)",
            cmap="viridis",
            vmin=0,
            vmax=3,
            colorbar_label="split",
        ),
        "surface_split",
    )
    r = record.get("per_region", {}).get("model", {}).get("pearson_r")
    if r is not None and len(r) == len(regions):
        save(
            _region_map(
                r,
                [info[k]["label"] for k in regions],
                vertex,
                mesh,
                title=f"{experiment.name}: profile r of each held-out region",
                cmap="RdBu_r",
                symmetric=True,
                colorbar_label="Pearson r (true vs predicted row)",
            ),
            "surface_accuracy",
        )
    matched = record.get("matched_attention")
    if matched:
        weights = np.asarray(matched["mean_attention"], float).mean(axis=0)  # over target columns
        from modalmerge.data.shards.regions import region_of_column

        hits = [region_of_column(c, info) for c in matched["condition_columns"]]
        on_region = [(info[h[1]]["label"], w) for h, w in zip(hits, weights, strict=True) if h]
        if on_region:
            labels, values = zip(*on_region, strict=True)
            save(
                _region_map(
                    values,
                    labels,
                    vertex,
                    mesh,
                    title=f"{experiment.name}: mean attention on each region's condition column",
                    cmap="viridis",
                    colorbar_label="attention",
                ),
                "surface_attention",
            )


def _surface_figures(metrics_path, manifest, vertex, target_columns, experiment, save) -> None:
    """Per-ROI accuracy on the surface and, with ROI views, one region's attention there.

    ``vertex``: the atlas label of each fsaverage5 vertex, left first;
    ``target_columns``: the target's ROI view (None: every ROI).
    """
    from modalmerge.evaluation.summary import read_metrics
    from modalmerge.viz import surface

    halves = _halves(vertex)
    record = read_metrics(metrics_path)
    target_ids = roi_labels(manifest, target_columns)
    r = np.asarray(record.get("per_roi", {}).get("model", {}).get("pearson_r", []), float)
    if len(r) != len(target_ids):
        return
    save(
        _region_map(
            r,
            target_ids,
            vertex,
            "fsaverage5",
            title=f"{experiment.name}: Pearson r per region, held-out volumes",
            cmap="RdBu_r",
            symmetric=True,
            colorbar_label="Pearson r",
        ),
        "surface_accuracy",
    )
    attention = record.get("homolog_attention")
    if not attention:
        return
    weights = np.asarray(attention["mean_attention"], float)  # (n_target, n_condition)
    cond_ids = roi_labels(manifest, roi_columns(manifest, experiment.condition_rois))
    hemi = _hemisphere_of(vertex, int(cond_ids[0]))
    best = int(np.argmax(r))  # the best-predicted target region
    save(
        surface.attention_on_surface(
            weights[best],
            cond_ids,
            halves[hemi],
            hemi,
            attention["target_rois"][best],
            region_names=dict(zip(cond_ids.tolist(), attention["condition_rois"], strict=True)),
        ),
        "surface_attention",
    )


def draw_summary_chart(summary_csv, settings: FiguresSettings | dict | None, out_path) -> Path:
    """Each experiment against its baselines, per metric."""
    summary = pd.read_csv(require_file(summary_csv, "summary table"))
    summary = summary[summary["metric"].isin(SUMMARY_METRICS)]
    if summary.empty:
        raise InputError(summary_csv, f"no rows with any of the metrics {SUMMARY_METRICS}")
    fig = fig_lib.summary_chart(summary)
    return fig_lib.save_figure(fig, out_path, dpi=FiguresSettings.coerce(settings).dpi)
