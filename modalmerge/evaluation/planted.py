"""Planted region links: does a target ROI's attention peak on its planted source region?

The synthetic source with ``planted_links: K`` lists its links in
``raw/planted_links.tsv`` (``target_label`` <- ``source_label``, atlas labels;
:mod:`modalmerge.data.synthetic.regional`). With the ``region_cnn`` image
encoder, condition token ``j`` is atlas region ``j + 1``, so the mean
cross-attention ``(n_target ROIs, n_regions)`` reads directly per region.
``planted_link_top1`` is the fraction of planted target ROIs whose attention
(averaged over heads and held-out samples) peaks on their planted source, beside
``planted_link_top1_chance`` (1 / n_regions) and the permutation null with the
regions' labels permuted (``planted_link_top1_null``: mean of 1,000 seeded
draws, ``_null_p95``, ``_p_value``;
:func:`~modalmerge.evaluation.scoring.attention_peak_null`).

``metrics.json``'s ``planted_links`` record lists each link with its peak region, the
weight on its source, the best other region (``runner_up_label``) and the ``margin``
(the source's weight minus that region's: positive when the link is found, negative
when it is missed, zero on a tie).
The smallest margin says how close the weakest link is to being lost or found, which the
0/1 score cannot (docs/benchmarks.md, "Fresh seed 17").
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.evaluation.scoring import attention_peaks, with_null
from modalmerge.io import InputError

log = logging.getLogger(__name__)

LINKS_FILE = "planted_links.tsv"


def read_planted_links(path: str | Path) -> pd.DataFrame | None:
    """The planted links table (``target_label``, ``source_label`` ...); None when absent."""
    path = Path(path)
    if not path.exists():
        return None
    table = pd.read_csv(path, sep="\t")
    missing = {"target_label", "source_label"} - set(table.columns)
    if missing:
        raise InputError(path, f"planted links table lacks column(s) {sorted(missing)}")
    return table


def link_pairs(target_labels, links: pd.DataFrame, n_regions: int) -> dict[int, int]:
    """``{target row: condition column}``: each planted target ROI among the model's target
    ROIs (by atlas label) -> its source region's token (label - 1)."""
    row_of = {int(label): i for i, label in enumerate(target_labels)}
    pairs = {}
    for t, s in zip(links["target_label"], links["source_label"], strict=True):
        if int(t) in row_of and 1 <= int(s) <= n_regions:
            pairs[row_of[int(t)]] = int(s) - 1
    return pairs


def planted_link_attention(
    attention: np.ndarray, target_labels, links: pd.DataFrame
) -> tuple[dict[str, float], dict] | None:
    """Scores and the ``planted_links`` record of ``metrics.json``; None when no planted
    target is among the target ROIs.

    Parameters
    ----------
    attention : ndarray, shape (n_target, n_regions)
        Cross-attention averaged over heads and held-out samples; column ``j`` is atlas
        region ``j + 1``.
    target_labels : sequence of int
        Atlas label of each target row.
    links : DataFrame
        :func:`read_planted_links`.
    """
    pairs = link_pairs(target_labels, links, attention.shape[1])
    if not pairs:
        return None
    hits = attention_peaks(attention, pairs)
    log.info("attention peaks on the planted source for %d of %d links", len(hits), len(pairs))
    scores = {
        "planted_link_top1": len(hits) / len(pairs),
        "planted_link_top1_chance": 1.0 / attention.shape[1],
    }
    scores, drawn = with_null("planted_link_top1", scores, attention, pairs)
    peaks = attention.argmax(axis=1)
    links_record = []
    for i, j in pairs.items():
        others = np.delete(attention[i], j)
        runner_up = int(np.argmax(others))
        runner_up += runner_up >= j  # back to a column of ``attention``
        links_record.append(
            {
                "target_label": int(target_labels[i]),
                "source_label": j + 1,
                "peak_label": int(peaks[i]) + 1,
                "attention_on_source": round(float(attention[i, j]), 6),
                "runner_up_label": runner_up + 1,
                "margin": round(float(attention[i, j] - attention[i, runner_up]), 6),
            }
        )
    weakest = min(links_record, key=lambda link: link["margin"])
    log.info(
        "weakest planted link: %d <- %d, margin %+.4f (the source's weight minus region %d's)",
        weakest["target_label"],
        weakest["source_label"],
        weakest["margin"],
        weakest["runner_up_label"],
    )
    record = {
        **drawn,
        "n_links": len(pairs),
        "links": links_record,
        "mean_attention": attention.round(6).tolist(),
    }
    return scores, record
