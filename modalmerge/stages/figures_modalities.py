"""Figures of the newer target and condition kinds, beside :mod:`modalmerge.stages.figures`
(which calls them): a generative model's samples (``conditioning='diffusion'``) and the
attention of a point-cloud condition drawn on its surface."""

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
