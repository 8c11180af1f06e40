"""Hub collapse on a toy shaped like the regional cohort: which decoder/attention options fix it?

24 box regions of an 8x12x8 image, 24 target ROIs that share a large group response
(different per ROI), of which 8 also shift their phase by one source region's latent
(source != target, fixed below), as in the planted cohort where the links are a small
part of the loss. The image carries every region's latent weakly, plus a global
component shared by all regions. Trains region_cnn (statistics tokens, no CNN) with
cross-attention and ROI queries, then prints the validation loss (vs the group mean)
and how many of the 8 planted targets' mean attention peaks on the source
(docs/benchmarks.md, "Hub collapse")::

    .venv/bin/python benchmarks/regional_hubs_toy.py --decoder-options '{"query": "roi", "n_layers": 0}'
"""

import argparse
import json
import time

import numpy as np
import torch

from modalmerge.models import MultiModalModel

S, R, T = 192, 24, 40
TARGETS = np.array([0, 3, 5, 9, 12, 17, 20, 22])
SOURCES = np.array([14, 21, 1, 6, 19, 8, 2, 11])  # target ROI TARGETS[k] <- region SOURCES[k]


def data(seed: int = 0, noise: float = 0.3, link: float = 0.6, offsets: bool = False):
    """Images (S, 2, 8, 12, 8) (intensity, atlas labels), series (S, T, R) and window starts
    (S,): 0, or (``offsets``) one of 0, 20, ..., 80 per sample, as the cohort's windows."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((8, 12, 8), np.int64)
    r = 0
    for a in range(2):
        for b in range(3):
            for c in range(4):
                labels[a * 4 : a * 4 + 4, b * 4 : b * 4 + 4, c * 2 : c * 2 + 2] = r + 1
                r += 1
    z = rng.standard_normal((S, R))
    shared = rng.standard_normal((S, 1))
    image = (
        noise * rng.standard_normal((S, 1, 8, 12, 8)) + 0.1 * (z + shared)[:, labels - 1][:, None]
    )
    start = rng.integers(0, 5, S) * 20 if offsets else np.zeros(S, np.int64)
    t = np.arange(T)[None, :] + start[:, None]  # (S, T) absolute time
    freq = rng.uniform(1.0, 3.0, R)
    phase0 = rng.uniform(0, 2 * np.pi, R)
    phase = np.tile(phase0, (S, 1))
    phase[:, TARGETS] += link * z[:, SOURCES]
    y = np.sin(2 * np.pi * freq * t[:, :, None] / T + phase[:, None, :])
    y = y + 0.3 * rng.standard_normal(y.shape)
    x = np.concatenate([image, np.broadcast_to(labels, (S, 1, 8, 12, 8))], 1)
    return (
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(y, dtype=torch.float32),
        torch.tensor(start, dtype=torch.long),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decoder-options", default='{"query": "roi"}')
    parser.add_argument("--method-options", default="{}")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.3, help="voxel noise SD (latent 0.1)")
    parser.add_argument("--offsets", action="store_true", help="windows at 5 starts")
    parser.add_argument("--link", type=float, default=0.6, help="phase shift per SD, rad")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x, y, o = data(noise=args.noise, link=args.link, offsets=args.offsets)
    n_train = 144
    model = MultiModalModel(
        condition_type="image",
        target_type="time_series",
        condition_encoder="region_cnn",
        embedding_dim=32,
        num_attention_heads=2,
        condition_shape=tuple(x.shape[1:]),
        target_shape=(T, R),
        encoder_options={"n_regions": R, "channels": 0, "statistics": True, "standardize": True},
        decoder_options=json.loads(args.decoder_options),
        conditioning_options=json.loads(args.method_options),
    )
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=0.01)
    start = time.time()
    for _ in range(args.steps):
        idx = torch.randint(0, n_train, (16,))
        loss = ((model(x[idx], time_offset=o[idx]).prediction - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(x[n_train:], time_offset=o[n_train:], return_attention=True)
    val = float(((out.prediction - y[n_train:]) ** 2).mean())
    means = {int(s): y[:n_train][o[:n_train] == s].mean(0) for s in o.unique()}
    group_pred = torch.stack([means[int(s)] for s in o[n_train:]])
    group = float(((group_pred - y[n_train:]) ** 2).mean())  # per window start
    attention = out.attention.mean(dim=(0, 1)).numpy()
    peaks = attention[TARGETS].argmax(1)
    print(f"{time.time() - start:.0f} s; val MSE {val:.4f} (group mean {group:.4f}); "
          f"planted hits {int((peaks == SOURCES).sum())}/8; peaks {peaks.tolist()} "
          f"sources {SOURCES.tolist()}")  # fmt: skip


if __name__ == "__main__":
    main()
