"""Figures of the newer target and condition kinds, beside :mod:`modalmerge.stages.figures`
(which calls them): a generative model's samples (``conditioning='diffusion'``), the
attention of a point-cloud condition drawn on its surface, and that of a 4D window
(``volume_series`` condition) on orthogonal slices for a few of its volumes."""

from __future__ import annotations

import numpy as np
import torch

from modalmerge.data.shards.split_arrays import read_manifest
from modalmerge.evaluation.metrics import connectivity
from modalmerge.stages.common import collect_split, experiment_dataset
from modalmerge.viz.attention import select_heads


@torch.no_grad()
def sample_figures(model, arrays, shard_dir, experiment, save) -> None:
    """A generative model's samples beside the truth, one window's denoising trajectory,
    and sample FC against the true and the group FC (the first kept test window)."""
    from modalmerge.viz import samples as sample_figs

    tr = float(read_manifest(shard_dir).get("tr") or 1.0)
    samples, truth = arrays["samples"][0], arrays["sample_target"][0]
    who = f"{experiment.name}: {arrays['sample_subjects'][0]}"
    save(sample_figs.samples_beside_truth(samples, truth, tr=tr), "samples")
    train = collect_split(shard_dir, "train", experiment)
    group_fc = np.mean([connectivity(t) for t in train.target], axis=0)
    save(sample_figs.sample_fc(samples, truth, group_fc, title=who), "sample_fc")
    test = experiment_dataset(shard_dir, "test", experiment)
    first = test[0]
    test.close()
    drawn = model.sample(
        first["condition"][None], n_samples=1, seed=0, return_trajectory=True,
        time_offset=torch.as_tensor([int(first["window_start"])]),
    )  # fmt: skip
    path = drawn.trajectory[:, 0, 0].numpy()  # (steps, T, R)
    save(
        sample_figs.denoising_trajectory(path, first["target"].numpy(), tr=tr, title=""),
        "denoising_trajectory",
    )


@torch.no_grad()
def point_cloud_attention(model, sample, offset, experiment, save) -> None:
    """The mean attention of every target query drawn on the subject's surface cloud."""
    from modalmerge.viz.point_cloud import attention_on_points

    x = sample["condition"][None]
    output = model(x, time_offset=torch.as_tensor([offset]), return_attention=True)
    weights = select_heads(output.attention[0].numpy()).mean(axis=0)  # all target queries
    centroids = model.encoder.token_coordinates(x)[0].numpy()
    save(
        attention_on_points(
            sample["condition"].numpy(),
            centroids,
            weights,
            title=f"{experiment.name}: mean attention, subject {sample['subject']}",
        ),
        "attention_on_surface",
    )


@torch.no_grad()
def volume_attention(model, experiment, shard_dir, save) -> None:
    """``attention_on_volumes.png``: one query's attention over a test window's space-time
    tokens (mean over heads), on orthogonal slices for four volumes. Brain decoding
    (``target_data: task_condition``): the query of the first task volume of the first test
    window holding one; otherwise the mean of every query over the first test window."""
    from modalmerge.viz.volume_attention import plot_space_time_attention

    dataset = experiment_dataset(shard_dir, "test", experiment)
    try:
        codes = dataset.get_batch(np.arange(len(dataset)))["target"].numpy()
        decoding = experiment.target_data == "task_condition"
        task = np.flatnonzero((codes > 0).any(axis=1)) if decoding else []
        k = int(task[0]) if len(task) else 0
        batch = dataset.get_batch([k])
    finally:
        dataset.close()
    window = batch["condition"]
    output = model(window, time_offset=batch["time_offset"], return_attention=True)
    weights = output.attention[0].float().mean(0)  # (n_queries, n_tokens), mean over heads
    subject = batch["subject"][0]
    if len(task):
        t = int(np.flatnonzero(codes[k] > 0)[0])
        names = read_manifest(shard_dir)["volume_series"]["task_conditions"]
        query = f"query of volume {t} ({names[int(codes[k, t])]})"
        weights = weights[t]
    else:
        query = "mean of every query"
        weights = weights.mean(0)
    title = f"{experiment.name}: {subject}, test window {k}, {query}"
    prov = model.condition_provenance()
    save(plot_space_time_attention(weights, prov, window[0], title=title), "attention_on_volumes")


def volume_rows_figure(arrays, name):
    """``volume_prediction.png``: the truth, the group mean, the prediction (a generative model's ensemble mean) and
    two samples (when kept) of the first held-out window."""
    from modalmerge.viz.samples import volume_windows_beside_truth

    rows = {"truth": arrays["target"][0], "group mean": arrays["group_mean"][0]}
    generative = "samples" in arrays
    rows["mean of samples" if generative else "prediction"] = arrays["prediction"][0]
    if generative:
        rows |= {f"sample {k + 1}": arrays["samples"][0][k] for k in range(2)}
    title = f"{name}: held-out {arrays['subjects'][0]}, window start {arrays['window_start'][0]}"
    return volume_windows_beside_truth(rows, arrays["brain_mask"], title=title)
