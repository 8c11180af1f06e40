"""Left/right homologs: pairing ROI names across hemispheres, and whether
cross-attention from one hemisphere's ROIs to the other's peaks on the homolog."""

from __future__ import annotations

import logging
import re

import numpy as np

from modalmerge.evaluation.scoring import attention_peaks, with_null

log = logging.getLogger(__name__)

_HEMI = re.compile(r"(^(l|r|lh|rh|left|right)[_\-. ])|([_\-. ](l|r|lh|rh|left|right)$)", re.I)


def homolog_base(name: str) -> str:
    """An ROI name without its hemisphere tag (``L_insula``, ``insula_rh`` -> ``insula``)."""
    return _HEMI.sub("", str(name)).lower()


def homolog_pairs(target_names: list[str], condition_names: list[str]) -> dict[int, int]:
    """``{target column: condition column}`` of ROIs with the same name but hemisphere."""
    where: dict[str, list[int]] = {}
    for j, name in enumerate(condition_names):
        where.setdefault(homolog_base(name), []).append(j)
    pairs = {}
    for i, name in enumerate(target_names):
        base = homolog_base(name)
        if base != str(name).lower() and len(where.get(base, [])) == 1:
            pairs[i] = where[base][0]
    return pairs


def homolog_attention(
    attention: np.ndarray, target_names: list[str], condition_names: list[str]
) -> tuple[dict[str, float], dict] | None:
    """Where each target ROI's mean attention peaks, against its homolog.

    Parameters
    ----------
    attention : ndarray, shape (n_target, n_condition)
        Cross-attention averaged over heads and test windows.
    target_names, condition_names : list of str
        The ROI names of the two views.

    Returns
    -------
    (scores, record) or None
        ``scores``: ``homolog_attention_fraction`` (of paired target ROIs whose
        peak is the homolog), ``homolog_attention_chance`` (1 / n_condition) and
        its permutation null with the condition ROIs' labels permuted
        (``homolog_attention_null``: mean of 1,000 seeded draws,
        ``homolog_attention_null_p95``, ``homolog_attention_p_value``:
        :func:`~modalmerge.evaluation.scoring.attention_peak_null`);
        ``record``: the ``homolog_attention`` entry of ``metrics.json``. None
        when no ROI pairs up.
    """
    pairs = homolog_pairs(target_names, condition_names)
    if not pairs:
        return None
    hits = attention_peaks(attention, pairs)
    log.info("attention peaks on the homolog for %d of %d target ROIs", len(hits), len(pairs))
    scores = {
        "homolog_attention_fraction": len(hits) / len(pairs),
        "homolog_attention_chance": 1.0 / attention.shape[1],
    }
    scores, drawn = with_null("homolog_attention", scores, attention, pairs)
    record = {
        **drawn,
        "n_pairs": len(pairs),
        "peaks_on_homolog": [target_names[i] for i in hits],
        "mean_attention": attention.round(6).tolist(),
        "condition_rois": condition_names,
        "target_rois": target_names,
    }
    return scores, record
