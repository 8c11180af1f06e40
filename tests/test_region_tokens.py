"""Region tokens (``region_cnn``) and the planted-link attention score."""

import numpy as np
import pandas as pd
import pytest
import torch

from modalmerge.evaluation.planted import planted_link_attention
from modalmerge.models import MultiModalModel
from modalmerge.models.encoders.regions import RegionCNNEncoder

torch.set_num_threads(1)  # tiny models: threads only add overhead (as tests/test_models.py)
R = 5


def _image_with_atlas(seed: int = 0, batch: int = 2) -> torch.Tensor:
    """(B, 2, 6, 6, 6): a T1-like channel and an atlas of R slabs along the first axis."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 1, 6, 6, 6, generator=g)
    labels = torch.zeros(6, 6, 6)
    for r in range(R):
        labels[r, 1:5, 1:5] = r + 1
    return torch.cat([image, labels.expand(batch, 1, 6, 6, 6)], dim=1)


def test_attention_is_target_roi_by_atlas_region():
    torch.manual_seed(0)
    model = MultiModalModel(
        condition_type="image",
        target_type="time_series",
        condition_encoder="region_cnn",
        embedding_dim=8,
        num_attention_heads=2,
        condition_shape=(2, 6, 6, 6),
        target_shape=(4, 3),
        encoder_options={"n_regions": R, "channels": 4},
        decoder_options={"query": "roi", "n_layers": 1},
        dropout=0.0,
    )
    out = model(_image_with_atlas(), return_attention=True)
    assert out.attention.shape == (2, 2, 3, R)  # (B, heads, target ROIs, regions)
    assert model.condition_provenance().kind == "region"


def test_permuting_region_labels_permutes_the_pooled_tokens():
    torch.manual_seed(0)
    encoder = RegionCNNEncoder((2, 6, 6, 6), 8, n_regions=R, channels=4).eval()
    x = _image_with_atlas()
    perm = torch.tensor([3, 0, 4, 1, 2])  # old label r + 1 -> new label perm[r] + 1
    relabelled = x.clone()
    labels = x[:, 1].long()
    relabelled[:, 1] = torch.where(labels > 0, perm[(labels - 1).clamp_min(0)] + 1, 0).float()
    before, after = encoder.pooled(x), encoder.pooled(relabelled)
    assert torch.allclose(after[:, perm], before, atol=1e-6)
    # the region of token r is read from its own voxels: changing region 2's image
    # changes token 1 most (the CNN's receptive field may spill into neighbours)
    changed = x.clone()
    changed[:, 0][x[:, 1] == 2] += 1.0
    diff = (encoder.pooled(changed) - before).abs().amax(dim=(0, 2))
    assert diff[1] > 1e-3
    assert diff[1] == diff.max()


def test_labels_outside_the_atlas_are_refused():
    encoder = RegionCNNEncoder((2, 6, 6, 6), 8, n_regions=R - 1)
    with pytest.raises(ValueError, match="n_regions"):
        encoder(_image_with_atlas())


def _links(pairs):
    return pd.DataFrame(
        {"target_label": [t for t, _ in pairs], "source_label": [s for _, s in pairs]}
    )


def test_planted_link_top1_on_a_hand_made_attention_matrix():
    n_regions = 20
    attention = np.full((4, n_regions), 0.01)
    target_labels = [3, 7, 9, 12]  # target rows' atlas labels
    # rows 0, 1, 2 peak on their planted sources (labels 15, 2, 20); row 3 peaks elsewhere
    attention[0, 14] = attention[1, 1] = attention[2, 19] = 0.5
    attention[3, 0] = 0.5
    links = _links([(3, 15), (7, 2), (9, 20), (12, 5), (30, 1)])  # label 30: not a target ROI
    scores, record = planted_link_attention(attention, target_labels, links)
    assert scores["planted_link_top1"] == pytest.approx(3 / 4)
    assert record["n_links"] == 4
    assert scores["planted_link_top1_chance"] == pytest.approx(1 / n_regions)
    assert abs(scores["planted_link_top1_null"] - 1 / n_regions) < 0.01
    assert scores["planted_link_top1_p_value"] < 0.01
    assert [link["peak_label"] for link in record["links"]] == [15, 2, 20, 1]
    # each link's margin: the source's weight minus the best other region's, and that region
    attention[1, 6] = 0.3  # a runner-up for row 1 (label 7)
    _, record = planted_link_attention(attention, target_labels, links)
    by_target = {link["target_label"]: link for link in record["links"]}
    assert by_target[7]["runner_up_label"] == 7
    assert by_target[7]["margin"] == pytest.approx(0.5 - 0.3)
    assert by_target[12]["runner_up_label"] == 1  # the miss: its peak is the runner-up
    assert by_target[12]["margin"] == pytest.approx(0.01 - 0.5)
    assert all((link["margin"] > 0) == (link["peak_label"] == link["source_label"])
               for link in record["links"])  # fmt: skip


def test_planted_link_score_is_none_without_planted_targets():
    assert planted_link_attention(np.ones((2, 4)), [1, 2], _links([(3, 1)])) is None


def test_region_statistics_are_each_regions_own_quantiles_and_sd():
    encoder = RegionCNNEncoder((2, 6, 6, 6), 8, n_regions=R, channels=0, statistics=True)
    x = _image_with_atlas(batch=1)
    pooled = encoder.pooled(x)[0].detach().numpy()  # (R, 1 mean + 6 stats + 7 centred)
    image, labels = x[0, 0].numpy(), x[0, 1].numpy()
    for r in range(R):
        values = image[labels == r + 1]
        expected = [values.mean(), *np.quantile(values, encoder.QUANTILES), values.std()]
        np.testing.assert_allclose(pooled[r, :7], expected, rtol=1e-4, atol=1e-5)
    # the centred half is the same statistics relative to the subject's average region
    np.testing.assert_allclose(pooled[:, 7:], pooled[:, :7] - pooled[:, :7].mean(0), atol=1e-5)
    assert not np.allclose(pooled[:, 7:], 0.0)


def test_region_statistics_and_cross_attention_find_a_planted_source():
    """A toy that can fail: 8 slab regions, each subject's region brightness a latent; the
    phase of each of 3 target series is set by one source region's brightness, under
    voxel noise 3 times the effect. Cross-attention on region tokens must peak on every
    planted source (chance 1/8 per link)."""
    rng = np.random.default_rng(0)
    n, regions, t, sources = 96, 8, 12, [5, 1, 6]
    labels = np.zeros((8, 4, 4), np.int64)
    for r in range(regions):
        labels[r] = r + 1
    z = rng.standard_normal((n, regions))
    image = 0.3 * rng.standard_normal((n, 1, 8, 4, 4)) + 0.1 * z[:, labels - 1][:, None]
    phase = 0.8 * z[:, sources]
    y = np.sin(2 * np.pi * np.arange(t)[None, :, None] / t + phase[:, None, :])
    x = np.concatenate([image, np.broadcast_to(labels, (n, 1, 8, 4, 4))], 1)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    torch.manual_seed(0)
    model = MultiModalModel(
        condition_type="image",
        target_type="time_series",
        condition_encoder="region_cnn",
        embedding_dim=16,
        num_attention_heads=2,
        condition_shape=(2, 8, 4, 4),
        target_shape=(t, len(sources)),
        encoder_options={"n_regions": regions, "channels": 0, "statistics": True},
        decoder_options={"query": "roi", "n_layers": 1},
        dropout=0.0,
    )
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for step in range(300):
        idx = torch.randint(0, 72, (16,), generator=torch.Generator().manual_seed(step))
        loss = ((model(x[idx]).prediction - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        attention = model.eval()(x[72:], return_attention=True).attention.mean(dim=(0, 1))
    links = _links([(q + 1, s + 1) for q, s in enumerate(sources)])
    scores, _ = planted_link_attention(attention.numpy(), np.arange(1, len(sources) + 1), links)
    assert scores["planted_link_top1"] == 1.0, attention.argmax(1)


def test_standardize_puts_a_few_per_cent_between_subjects_at_unit_scale():
    """Region 2's intensity differs between subjects by 5 % around a level of 1 (the other
    regions by nothing but voxel noise): standardised, its mean feature is that latent at
    unit SD across subjects, not a 0.05 ripple."""
    encoder = RegionCNNEncoder(
        (2, 6, 6, 6), 8, n_regions=R, channels=0, statistics=True, standardize=True
    )
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, generator=g)
    x = _image_with_atlas(batch=64)
    x[:, 0] = 1.0 + 0.01 * x[:, 0]
    x[:, 0] += 0.05 * z[:, None, None, None] * (x[:, 1] == 2)
    pooled = encoder.pooled(x)
    standardized = encoder.standardize(pooled.flatten(1)).view(pooled.shape)
    mean_feature = standardized[:, 1, 0]
    assert pooled[:, 1, 0].std() < 0.06  # raw: a ripple of about 0.05
    assert abs(float(mean_feature.std()) - 1.0) < 0.05
    assert float(torch.corrcoef(torch.stack([mean_feature, z]))[0, 1]) > 0.99
