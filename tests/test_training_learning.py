"""The learning test: cross-attention finds the image region that drives each ROI.

A tiny planted task: a 12^3 image has eight octants of random intensity; four of
them set the amplitudes of four ROIs that share one time course, the other four
are distractors. The image -> time series MultiModalModel ("cnn" encoder, ROI
queries) trained by Trainer must beat the mean predictor clearly, and each ROI's
cross-attention, mapped back onto the image through the encoder's token grid,
must peak inside the octant that drives it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from modalmerge.models import MultiModalModel
from modalmerge.training.trainer import Trainer

torch.set_num_threads(1)

SIZE, HALF, WINDOW = 12, 6, 12
DRIVERS = [(0, 0, 0), (0, HALF, HALF), (HALF, 0, HALF), (HALF, HALF, 0)]  # octant corners
DISTRACTORS = [(0, 0, HALF), (0, HALF, 0), (HALF, 0, 0), (HALF, HALF, HALF)]


class PlantedOctants(Dataset):
    """Images (1, 12, 12, 12) and ROI series (12, 4): ROI r = intensity of octant r x course."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.image = 0.1 * torch.randn(n, 1, SIZE, SIZE, SIZE, generator=g)
        amplitude = torch.rand(n, 8, generator=g) * 2 - 1
        for i, (z, y, x) in enumerate(DRIVERS + DISTRACTORS):
            self.image[:, 0, z : z + HALF, y : y + HALF, x : x + HALF] += amplitude[
                :, i, None, None, None
            ]
        course = torch.sin(torch.linspace(0, 3 * np.pi, WINDOW))
        noise = 0.05 * torch.randn(n, WINDOW, 4, generator=g)
        self.series = amplitude[:, None, :4] * course[None, :, None] + noise

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> dict:
        return {"condition": self.image[i], "target": self.series[i]}


def test_cross_attention_model_learns_planted_task_and_attends_to_each_rois_region():
    train, val = PlantedOctants(128, seed=1), PlantedOctants(64, seed=2)
    torch.manual_seed(0)
    model = MultiModalModel(
        "image", "time_series", condition_encoder="cnn", target_decoder="transformer",
        embedding_dim=32, num_attention_heads=2, dropout=0.0,
        condition_shape=(1, SIZE, SIZE, SIZE), target_shape=(WINDOW, 4),
        encoder_options={"channels": 8, "n_blocks": 1},
        decoder_options={"query": "roi", "n_layers": 1},
    )  # fmt: skip
    Trainer(
        model, lr=1e-2, patience=40, progress=False, loss_options={"correlation_weight": 0.1}
    ).train(
        DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=64), epochs=40
    )

    model.eval()
    with torch.no_grad():
        output = model(val.image, return_attention=True)
    mse = F.mse_loss(output.prediction, val.series).item()
    mean_predictor = F.mse_loss(train.series.mean(0).expand_as(val.series), val.series).item()
    assert mse < 0.25 * mean_predictor

    # attention (B, heads, 4 ROI queries, grid tokens) -> per ROI map on the token grid
    assert model.target_provenance().kind == "roi"
    provenance = model.condition_provenance()
    assert provenance.kind == "image_grid"
    grid = output.attention.mean(dim=(0, 1)).reshape(4, *provenance.grid_shape)
    on_image = F.interpolate(grid[None], size=(SIZE,) * 3, mode="trilinear", align_corners=False)[0]
    for roi, (z, y, x) in enumerate(DRIVERS):
        peak = np.unravel_index(int(on_image[roi].argmax()), on_image[roi].shape)
        assert z <= peak[0] < z + HALF and y <= peak[1] < y + HALF and x <= peak[2] < x + HALF, roi
        inside = on_image[roi, z : z + HALF, y : y + HALF, x : x + HALF].mean()
        outside = (on_image[roi].sum() - inside * HALF**3) / (SIZE**3 - HALF**3)
        assert inside > 3 * outside, roi
