"""In-process fit of the regional planted cohort's image -> time-series model (tuning tool).

Reads the shards of a regional run (``results/<name>/shards``, built by the workflow
with ``--until shard``), trains one model on the training subjects for a fixed number of
epochs, and prints per epoch the validation loss and ``planted_link_top1`` of the
validation subjects' attention (mean over heads and samples) with its permutation null.
Validation subjects only: this is how settings were chosen on the tuning seed
(docs/benchmarks.md, "Regional planted cohort")::

    .venv/bin/python benchmarks/regional_fit.py results/regional_tune --epochs 10 \\
        --method cross_attention --options '{"n_regions": 24, "channels": 0, "statistics": true}'
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from modalmerge.data.shards.split_arrays import load_split_arrays, run_length
from modalmerge.evaluation.planted import link_pairs, planted_link_attention
from modalmerge.models import MultiModalModel
from modalmerge.training.losses import make_loss
from modalmerge.training.schedule import make_optimizer, make_scheduler


def truth_images(root: Path, images: dict) -> np.ndarray:
    """The images with their T1 channel replaced by each region's true generating grey-matter
    intensity (``truth/<subject>.npz`` ``structural[:, 1]``, painted on the atlas channel):
    a diagnostic of what the model does when the anatomy carries the latent perfectly."""
    data = images["data"].copy()
    for i, subject in enumerate(images["subject"]):
        gm = np.load(root / "truth" / f"{subject}.npz")["structural"][:, 1]
        labels = data[i, -1].round().astype(int)
        data[i, 0] = np.where(labels > 0, gm[np.clip(labels - 1, 0, None)], 0.0)
    return data


def split(root: Path, name: str, truth: bool = False) -> tuple[torch.Tensor, ...]:
    """(images per window, windows, window starts) of one split."""
    images = load_split_arrays(root / "shards", name, "image")
    if truth:
        images["data"] = truth_images(root, images)
    series = load_split_arrays(root / "shards", name, "time_series")
    row = {s: i for i, s in enumerate(images["subject"])}
    index = np.array([row[s] for s in series["subject"]])
    return (
        torch.tensor(images["data"][index], dtype=torch.float32),
        torch.tensor(series["data"], dtype=torch.float32),
        torch.tensor(series["window_start"], dtype=torch.long),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--method", default="cross_attention")
    parser.add_argument("--options", default='{"n_regions": 24, "channels": 8}')
    parser.add_argument(
        "--decoder-options", default='{"query": "roi"}', help="e.g. n_layers 0: no ROI mixing"
    )
    parser.add_argument("--method-options", default="{}", help='e.g. {"sink": true}')
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth-image", action="store_true", help="see truth_images")
    parser.add_argument(
        "--cosine",
        action="store_true",
        help="the workflow Trainer's default per-step schedule (make_scheduler 'cosine')",
    )
    parser.add_argument(
        "--trainer-loss",
        action="store_true",
        help="the workflow Trainer's time-series loss (make_loss: MSE + 0.5 x (1 - Pearson r)) "
        "instead of plain MSE",
    )
    parser.add_argument(
        "--trainer-optimizer",
        action="store_true",
        help="the workflow Trainer's optimizer (make_optimizer: betas 0.9/0.95, decay on weight "
        "matrices only) and gradient clipping (norm 1) instead of AdamW's defaults",
    )
    parser.add_argument(
        "--entropy",
        type=float,
        default=0.0,
        help="add this times the mean attention entropy (nats, per sample, head and ROI) "
        "to the training loss: a penalty for spread-out attention (cross_attention only)",
    )
    parser.add_argument(
        "--residual",
        action="store_true",
        help="targets minus the training subjects' mean window (per window start): the "
        "model learns only the subject-specific part",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    (xt, yt, ot), (xv, yv, ov) = (split(args.root, s, args.truth_image) for s in ("train", "val"))
    if args.residual:
        for start in ot.unique():
            mean = yt[ot == start].mean(0)
            yt[ot == start] -= mean
            yv[ov == start] -= mean
    links = pd.read_csv(args.root / "raw" / "planted_links.tsv", sep="\t")
    decoder_options = json.loads(args.decoder_options)
    if decoder_options.get("readout") == "run":  # derived from the shards, as the workflow does
        decoder_options["run_length"] = run_length(args.root / "shards", yt.shape[1])
    model = MultiModalModel(
        condition_type="image",
        target_type="time_series",
        condition_encoder="region_cnn",
        target_decoder="transformer",
        embedding_dim=args.dim,
        num_attention_heads=args.heads,
        dropout=args.dropout,
        conditioning=args.method,
        conditioning_options=json.loads(args.method_options),
        condition_shape=tuple(xt.shape[1:]),
        target_shape=tuple(yt.shape[1:]),
        encoder_options=json.loads(args.options),
        decoder_options=decoder_options,
    )
    print(f"{len(xt)} train windows, {len(xv)} val windows, "
          f"{sum(p.numel() for p in model.parameters())} parameters")  # fmt: skip
    if args.trainer_optimizer:
        opt = make_optimizer(model, args.lr, weight_decay=0.01)
    else:
        opt = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.01)
    criterion = make_loss("time_series") if args.trainer_loss else None
    steps = args.epochs * len(torch.arange(len(xt)).split(16))
    schedule = make_scheduler(opt, "cosine" if args.cosine else "constant", steps)
    labels = np.arange(1, yt.shape[2] + 1)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(16):
            out = model(xt[idx], time_offset=ot[idx], return_attention=args.entropy > 0)
            if criterion is None:
                loss = ((out.prediction - yt[idx]) ** 2).mean()
            else:
                loss = criterion(out.prediction, yt[idx])
            if args.entropy > 0:
                w = out.attention.clamp_min(1e-12)
                loss = loss + args.entropy * (-(w * w.log()).sum(-1)).mean()
            opt.zero_grad()
            loss.backward()
            if args.trainer_optimizer:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            out = [model(xv[i], time_offset=ov[i], return_attention=True)
                   for i in torch.arange(len(xv)).split(64)]  # fmt: skip
            val = float(torch.cat([((o.prediction - yv[i]) ** 2).mean((1, 2)) for o, i in
                                   zip(out, torch.arange(len(xv)).split(64), strict=True)]).mean())  # fmt: skip
            cpu = sum(os.times()[:2])
            line = f"epoch {epoch + 1} val loss {val:.4f} ({time.time() - start:.0f} s, cpu {cpu:.0f} s)"
            if out[0].attention is not None:
                heads = torch.cat([o.attention for o in out]).mean(dim=0).numpy()  # (h, Q, N)
                scores, record = planted_link_attention(heads.mean(0), labels, links)
                peaks = [(x["peak_label"], x["source_label"]) for x in record["links"]]
                per_head = [len([1 for i, j in link_pairs(labels, links, h.shape[1]).items()
                                 if h[i].argmax() == j]) for h in heads]  # fmt: skip
                line += (f" top1 {scores['planted_link_top1']:.3f} "
                         f"null {scores['planted_link_top1_null']:.3f} hits per head {per_head} "
                         f"mass on regions {heads.sum(-1).mean():.2f} peaks {peaks}")  # fmt: skip
                # how peaked is the attention? per sample and head: the largest weight and
                # the entropy / ln(n_regions) (1 = uniform), means over samples, heads, ROIs
                w = torch.cat([o.attention for o in out])
                p = w / w.sum(-1, keepdim=True)
                entropy = float((-(p * p.clamp_min(1e-12).log()).sum(-1)).mean()) / np.log(
                    w.shape[-1]
                )
                line += f" max weight {float(w.amax(-1).mean()):.3f} entropy {entropy:.3f}"
            print(line, flush=True)
            if out[0].attention is not None and epoch == args.epochs - 1:
                full = torch.cat([o.attention for o in out]).mean(dim=1)  # (n, Q, N)
                for start in ov.unique().tolist():  # does attention follow the window start?
                    peaks = full[ov == start].mean(0).argmax(1) + 1
                    print(f"  window start {start}: peak regions of the 24 ROIs "
                          f"{sorted(set(peaks.tolist()))}")  # fmt: skip


if __name__ == "__main__":
    main()
