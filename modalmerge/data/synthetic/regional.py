"""Planted region links of the synthetic cohort (``planted_links: K``, off by default).

Each link ``k`` is an independent standard-normal subject latent ``z_k`` with
one *source* region and one *target* region:

- anatomy: the source region's grey-matter T1 intensity is shifted by
  ``planted_link_sd * z_k`` (relative to 1; 0.04 is a 4 % between-subject SD);
- function: the target region's evoked-response latency is
  ``base_latency + LINK_LATENCY_S * z_k`` (s, clipped like every latency) and,
  with two conditions, its share of condition ``left`` is
  ``expit(LINK_PREFERENCE_GAIN * z_k)`` (total condition weight unchanged):
  the *shape* of its response, which Pearson r sees, not only its size.

The layout is a cohort constant (its own random stream): sources and targets
are 2K distinct regions; a target is never its source's homologue nor one of
the ``NEIGHBOURS`` regions nearest to the source or to its homologue, and has a
task gain of at least ``MIN_TARGET_GAIN`` in magnitude (so its response is not
lost in noise). With ``planted_links: 0`` nothing here runs and no random
number is drawn: the default cohort is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from modalmerge.data.synthetic.params import STREAM_PLANTED, SyntheticParams, rng_for

LINK_LATENCY_S = 1.0  # target latency shift per SD of the latent, s
LINK_PREFERENCE_GAIN = 1.5  # logit of the target's condition-0 share per SD of the latent
NEIGHBOURS = 3  # nearest regions (by seed direction) a target may not be
MIN_TARGET_GAIN = 0.45  # smallest |task gain| of a target region


@dataclass(frozen=True)
class PlantedLinks:
    """The cohort's planted links: 0-based region indices, link ``k`` = ``target[k] <- source[k]``."""

    source: np.ndarray  # (K,)
    target: np.ndarray  # (K,)


def _excluded_targets(directions: np.ndarray, source: int) -> set[int]:
    """The source, its homologue and the regions nearest to either (by seed direction)."""
    n_half = len(directions) // 2
    homologue = (source + n_half) % len(directions)
    excluded = {source, homologue}
    for r in (source, homologue):
        order = np.argsort(-(directions @ directions[r]))
        excluded |= {int(j) for j in order[1 : NEIGHBOURS + 1]}
    return excluded


@functools.lru_cache(maxsize=8)
def planted_links(p: SyntheticParams) -> PlantedLinks:
    """The cohort's link layout, a deterministic function of ``p`` (cached).

    Raises
    ------
    ValueError
        When ``n_regions`` is too small for ``planted_links`` distinct, distant pairs.
    """
    from modalmerge.data.synthetic.factors import cohort_constants

    cohort = cohort_constants(p)
    rng = rng_for(p, 0, STREAM_PLANTED)
    directions = cohort.region_directions
    eligible = np.abs(cohort.gain) >= MIN_TARGET_GAIN
    for _attempt in range(200):
        order = rng.permutation(p.n_regions)
        used: set[int] = set()
        sources, targets = [], []
        for s in order:
            if len(sources) == p.planted_links:
                break
            if s in used:
                continue
            bad = _excluded_targets(directions, int(s)) | used
            options = [t for t in range(p.n_regions) if t not in bad and eligible[t]]
            if not options:
                continue
            t = int(rng.choice(options))
            sources.append(int(s))
            targets.append(t)
            used |= {int(s), t}
        if len(sources) == p.planted_links:
            return PlantedLinks(np.array(sources), np.array(targets))
    raise ValueError(
        f"synthetic setting planted_links={p.planted_links!r}: too many for "
        f"n_regions={p.n_regions} (each link needs two distinct, distant regions)"
    )


def apply_planted_links(p: SyntheticParams, truth):
    """``truth`` (a :class:`~modalmerge.data.synthetic.factors.SubjectTruth`) with the
    planted links applied: source intensities shifted, target latencies and condition
    weights set by the subject's latents (``planted_latents``, drawn from the subject's
    own planted stream)."""
    from modalmerge.data.synthetic.factors import cohort_constants

    links = planted_links(p)
    cohort = cohort_constants(p)
    z = rng_for(p, truth.index, STREAM_PLANTED).standard_normal(len(links.source))
    structural = truth.structural.copy()
    structural[links.source, 1] += p.planted_link_sd * z
    latency = truth.latency.copy()
    latency[links.target] = np.clip(cohort.base_latency[links.target] + LINK_LATENCY_S * z, -2, 4)
    weights = truth.condition_weights.copy()
    if weights.shape[0] == 2:
        total = weights[:, links.target].sum(axis=0)
        share = expit(LINK_PREFERENCE_GAIN * z)
        weights[:, links.target] = np.stack([share * total, (1.0 - share) * total])
    return dataclasses.replace(
        truth, structural=structural, latency=latency, condition_weights=weights, planted_latents=z
    )


def links_table(p: SyntheticParams, names: list[str]) -> pd.DataFrame:
    """``raw/planted_links.tsv``: one row per link (target ROI <- source region), atlas
    labels 1-based, with the link's relation and the distance between region seeds."""
    links = planted_links(p)
    n_half = p.regions_per_hemisphere
    from modalmerge.data.synthetic.factors import cohort_constants

    directions = cohort_constants(p).region_directions
    rows = []
    for k, (s, t) in enumerate(zip(links.source, links.target, strict=True)):
        same = (s < n_half) == (t < n_half)
        rows.append(
            {
                "link": k,
                "target_label": int(t) + 1,
                "target_roi": names[t],
                "source_label": int(s) + 1,
                "source_region": names[s],
                "hemispheres": "same" if same else "opposite",
                "seed_angle_deg": round(
                    float(np.degrees(np.arccos(np.clip(directions[s] @ directions[t], -1, 1)))), 1
                ),
                "intensity_sd": p.planted_link_sd,
                "latency_s_per_sd": LINK_LATENCY_S,
                "preference_logit_per_sd": LINK_PREFERENCE_GAIN,
            }
        )
    return pd.DataFrame(rows)
