"""Tiny model shapes, batches and checks shared by the model tests (no tests here: importing
a test module from another would register its test encoders twice)."""

from __future__ import annotations

from pathlib import Path

import torch

from modalmerge.models import MultiModalModel

MODALITIES = ["image", "time_series", "text", "tabular", "graph", "point_cloud", "volume_series"]
B, DIM, HEADS = 2, 16, 2
IMAGE = (1, 8, 8, 8)
SERIES = (6, 3)
GRAPH = (5, 2 + 5)  # 5 nodes, 2 node features, then the 5 adjacency rows
CLOUD = (24, 5)  # 24 points: xyz (mm) + 2 features
VOLUMES = (3, 8, 8, 8)  # (T, D, H, W): 3 volumes of 2 x 2 x 2 patches of 4^3
VOCAB, MAX_LEN = 12, 6
N_NUM, CARDS = 2, [3, 2]
TINY_ENCODERS = {
    "image": "cnn",
    "time_series": "transformer",
    "text": "gru",
    "tabular": "mlp",
    "graph": "graph_transformer",
    "point_cloud": "point_transformer",
    "volume_series": "spatiotemporal",
}
TINY_OPTIONS = {
    "image": {"n_blocks": 2},
    "time_series": {"n_layers": 1},
    "text": {},
    "tabular": {},
    "graph": {"n_layers": 1},
    "point_cloud": {"n_tokens": 6, "neighbours": [4, 8]},
    "volume_series": {"n_layers": 1},
}
SHAPES = {
    "image": IMAGE,
    "time_series": SERIES,
    "graph": GRAPH,
    "point_cloud": CLOUD,
    "volume_series": VOLUMES,
}


def tiny_model(
    condition: str, target: str, method: str = "cross_attention", **kw
) -> MultiModalModel:
    args = dict(
        condition_type=condition,
        target_type=target,
        condition_encoder=TINY_ENCODERS[condition],
        embedding_dim=DIM,
        num_attention_heads=HEADS,
        conditioning=method,
        condition_shape=SHAPES.get(condition),
        target_shape=SHAPES.get(target),
        vocab_size=VOCAB,
        max_length=MAX_LEN,
        n_numeric=N_NUM,
        categorical_cardinalities=CARDS,
        dropout=0.0,
        encoder_options=TINY_OPTIONS[condition],
        decoder_options={"n_layers": 1} if target in ("time_series", "text", "graph") else {},
    )
    args.update(kw)
    return MultiModalModel(**args)


def batch(modality: str, shape=None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if modality == "image":
        return torch.randn(B, *(shape or IMAGE), generator=g)
    if modality == "time_series":
        return torch.randn(B, *(shape or SERIES), generator=g)
    if modality == "graph":
        n = (shape or GRAPH)[0]
        features = torch.randn(B, n, (shape or GRAPH)[1] - n, generator=g)
        a = torch.rand(B, n, n, generator=g)
        return torch.cat([features, (a + a.transpose(1, 2)) / 2], dim=-1)
    if modality == "point_cloud":  # points on a sphere of radius ~60 mm, then features
        n, width = shape or CLOUD
        xyz = torch.randn(B, n, 3, generator=g)
        xyz = 60 * xyz / xyz.norm(dim=-1, keepdim=True)
        return torch.cat([xyz, torch.randn(B, n, width - 3, generator=g)], dim=-1)
    if modality == "volume_series":
        return torch.randn(B, *(shape or VOLUMES), generator=g)
    if modality == "text":
        ids = torch.randint(4, VOCAB, (B, MAX_LEN), generator=g)
        ids[:, 0], ids[:, 3], ids[:, 4:] = 1, 2, 0  # bos w w eos pad pad
        return ids
    numeric = torch.randn(B, N_NUM, generator=g)
    codes = torch.stack([torch.randint(0, c, (B,), generator=g) for c in CARDS], 1).float()
    return torch.cat([numeric, codes], 1)


def check_prediction(prediction, target: str) -> None:
    if target == "image":
        assert prediction.shape == (B, *IMAGE)
    elif target == "time_series":
        assert prediction.shape == (B, *SERIES)
    elif target == "point_cloud":
        assert prediction.shape == (B, *CLOUD)
    elif target == "volume_series":
        assert prediction.shape == (B, *VOLUMES)
    elif target == "text":
        assert prediction.shape == (B, MAX_LEN, VOCAB)
    elif target == "graph":
        assert prediction.shape == (B, *GRAPH)
        adjacency = prediction[..., GRAPH[1] - GRAPH[0] :]
        torch.testing.assert_close(adjacency, adjacency.transpose(1, 2))
    else:
        assert prediction["numeric"].shape == (B, N_NUM)
        assert [tuple(c.shape) for c in prediction["categorical"]] == [(B, c) for c in CARDS]


def scalar_loss(prediction) -> torch.Tensor:
    if isinstance(prediction, dict):
        return prediction["numeric"].square().mean() + sum(
            c.square().mean() for c in prediction["categorical"]
        )
    return prediction.square().mean()


#: the tiny image -> ROI time-series experiment of the workflow-stage tests (train, evaluate)
TINY_IMAGE_TO_SERIES = {
    "name": "tiny", "condition": "image", "target": "time_series", "encoder": "cnn",
    "decoder": "transformer", "method": "cross_attention", "embedding_dim": 8, "heads": 2,
    "encoder_options": {"channels": 4},
}  # fmt: skip

#: the training settings of the tiny train -> evaluate tests (one epoch)
TINY_TRAIN = {"seed": 0, "epochs": 1, "batch_size": 4, "lr": 0.003, "patience": 5}


def fit_and_evaluate(tmp_path, experiment: dict, evaluate: dict | None = None):
    """Train ``experiment`` on ``tmp_path/shards`` with the train stage (one epoch), evaluate
    it with the evaluate stage into ``tmp_path/eval`` (``m.json``, ``p.npz``); returns the
    evaluate record and that folder."""
    from modalmerge.stages.evaluate import evaluate_experiment
    from modalmerge.stages.train import train_experiment

    shards = tmp_path / "shards"
    model = train_experiment(shards, experiment, TINY_TRAIN, tmp_path / "model")
    out = tmp_path / "eval"
    record = evaluate_experiment(
        model, shards, experiment, evaluate or {}, out / "m.json", out / "p.npz"
    )
    return record, out


def tiny_shards(root: Path) -> Path:
    """The shard tests' eight subjects (``test_shards.make_inputs``) written as shards under
    ``root/shards``: the data of the train-stage tests."""
    from test_shards import PARAMS, make_inputs

    from modalmerge.data.shards.subjects import write_shards

    write_shards(*make_inputs(root), root / "shards", PARAMS)
    return root / "shards"
