"""A short English description of a synthetic subject, written from its truth.

Categories use fixed cut points on the generating scales (not the cohort's
sample), so a subject's text depends on that subject alone.
"""

from __future__ import annotations

import numpy as np

from modalmerge.data.synthetic.factors import SubjectTruth, cohort_constants
from modalmerge.data.synthetic.params import SyntheticParams


def _grade(value: float, cuts: tuple[float, float], words: tuple[str, str, str]) -> str:
    return words[int(np.searchsorted(cuts, value, side="right"))]


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def describe_subject(
    p: SyntheticParams, truth: SubjectTruth, subject: str, names: list[str]
) -> str:
    """Describe age, sex, group, atrophy, ventricles, regional thickness and lesions.

    Parameters
    ----------
    p : SyntheticParams
    truth : SubjectTruth
        The subject's generating truth.
    subject : str
        Subject id, e.g. ``"sub-001"``.
    names : list of str
        Region names in label order.

    Returns
    -------
    str
        A few sentences, ending with a newline.
    """
    sex = {"F": "female", "M": "male"}[truth.sex]
    age = f"{truth.age:.0f}"
    article = "an" if age.startswith("8") or age in ("11", "18") else "a"
    lines = [f"{subject} is {article} {age}-year-old {sex} in the {truth.group} group."]
    relative = truth.atrophy / p.atrophy_scale
    atrophy = _grade(relative, (0.45, 0.85), ("little", "moderate", "marked"))
    ventricles = _grade(
        truth.ventricle_scale,
        (1.0 + 0.45 * p.ventricle_gain, 1.0 + 0.9 * p.ventricle_gain),
        ("normal-sized", "enlarged", "markedly enlarged"),
    )
    lines.append(f"The brain shows {atrophy} global atrophy with {ventricles} ventricles.")

    cohort = cohort_constants(p)
    deviation = truth.thickness - cohort.base_thickness  # mm, against the cohort's regional norm
    order = np.argsort(deviation)
    thick = [names[i] for i in order[::-1][:2] if deviation[i] > 0.25]
    thin = [names[i] for i in order[:2] if deviation[i] < -0.25]
    if thick:
        lines.append(f"Cortical grey matter is thicker than typical in {_join(thick)}.")
    if thin:
        lines.append(f"Cortical grey matter is thinner than typical in {_join(thin)}.")
    if not thick and not thin:
        lines.append("Cortical thickness is close to typical in every region.")
    mean_intensity = float(np.mean(truth.gm_intensity))
    contrast = _grade(mean_intensity, (0.97, 1.03), ("reduced", "normal", "increased"))
    lines.append(f"Grey-matter T1 signal is {contrast} overall.")
    n_lesions = len(truth.lesion_radii_mm)
    if n_lesions:
        where = _join(sorted({names[i] for i in truth.lesion_regions}))
        plural = "lesion" if n_lesions == 1 else "lesions"
        lines.append(
            f"There {'is' if n_lesions == 1 else 'are'} {n_lesions} white-matter "
            f"{plural} beneath {where}."
        )
    else:
        lines.append("No white-matter lesions are seen.")
    return " ".join(lines) + "\n"
