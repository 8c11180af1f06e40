"""Leave-one-site-out as one DAG: the folds of ``shard.test_site: all`` / ``harmonize: both``.

With ``shard.split_by: site``, ``shard.test_site: all`` holds out every site of
the cohort in turn, and ``shard.harmonize: both`` runs each held-out site once
without and once with ComBat. Each (harmonize, held-out site) pair is a *fold*:
one branch of the DAG (shard -> train -> evaluate) with its own outputs under

    results/<name>/loso/<harmonize>/<site>/{shards,models,eval}/...

(the Snakemake wildcard ``fold``, ``/loso/<harmonize>/<site>``, after the
repeat's root, as ``rep`` is: :mod:`modalmerge.repeats`). A fold's shard
settings are the configured ones with ``test_site`` and ``harmonize`` set to
the fold's (``harmonize: none`` left out, as in a single-split run), so fold
``none/siteA`` writes the same shards as a run with ``test_site: siteA``. A
single held-out site with one harmonisation keeps the single-split paths
(``fold`` empty): the default DAG does not change. ``site_summary`` then gathers
every fold's ``metrics.json`` into ``results/<name>/loso/site_summary.csv`` and
``site_scores.png`` (:mod:`modalmerge.evaluation.sites`).

The sites must be known when the DAG is built: the synthetic source's
``sites`` setting (round robin over subjects). Stdlib only: the Snakefile imports it.

>>> fold_suffix("combat", "siteA"), parse_fold("/loso/combat/siteA")
('/loso/combat/siteA', ('combat', 'siteA'))
>>> fold_params({"seed": 0, "split_by": "site", "test_site": "all", "harmonize": "both"},
...             "/loso/none/siteB")
{'seed': 0, 'split_by': 'site', 'test_site': 'siteB'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "ALL_SITES",
    "BOTH",
    "FOLD_PATTERN",
    "MIN_SUBJECTS_PER_SITE",
    "cohort_sites",
    "fold_params",
    "fold_suffix",
    "fold_suffixes",
    "parse_fold",
]

#: ``shard.test_site`` value that holds out every site in turn
ALL_SITES = "all"
#: ``shard.harmonize`` value that runs every fold without and with ComBat
BOTH = "both"
HARMONIZE = ("none", "combat")
#: a fold's path suffix after results/<name>{rep} (the Snakemake wildcard ``fold``)
FOLD_PATTERN = r"(/loso/(none|combat)/[A-Za-z0-9]+)?"
#: subjects a site needs to be held out (an interval over them; ComBat estimates an
#: unseen site's effects from its own subjects) or to train ComBat on
MIN_SUBJECTS_PER_SITE = 2


def fold_suffix(harmonize: str, site: str) -> str:
    """The path suffix of the fold holding out ``site`` with ``harmonize``."""
    suffix = f"/loso/{harmonize}/{site}"
    if not re.fullmatch(FOLD_PATTERN, suffix) or harmonize not in HARMONIZE:
        raise ValueError(f"not a fold: harmonize {harmonize!r}, site {site!r}")
    return suffix


def parse_fold(suffix: str) -> tuple[str, str] | None:
    """``(harmonize, site)`` of a fold suffix; None for the single split (``""``)."""
    if not re.fullmatch(FOLD_PATTERN, suffix):
        raise ValueError(f"not a fold suffix: {suffix!r} (expected '' or '/loso/<h>/<site>')")
    if not suffix:
        return None
    _, _, harmonize, site = suffix.split("/")
    return harmonize, site


def has_folds(shard: Mapping) -> bool:
    """Whether the ``shard:`` settings expand into folds."""
    return shard.get("split_by") == "site" and (
        shard.get("test_site") == ALL_SITES or shard.get("harmonize") == BOTH
    )


def fold_suffixes(shard: Mapping, sites: Mapping[str, str]) -> list[str]:
    """Every fold's suffix (harmonize-major, sites sorted); ``[]`` when there are no folds.

    Parameters
    ----------
    shard : mapping
        The ``shard:`` settings (``split_by``, ``test_site``, ``harmonize``).
    sites : mapping
        ``{subject: site}`` of the cohort (:func:`cohort_sites`).

    Raises
    ------
    ValueError
        A named test site that is not in the cohort, fewer than 3 sites (a
        held-out site, a validation site and a training site), or a site with
        fewer than :data:`MIN_SUBJECTS_PER_SITE` subjects.
    """
    if not has_folds(shard):
        return []
    names = sorted(set(sites.values()))
    counts = {n: sum(1 for s in sites.values() if s == n) for n in names}
    test = names if shard["test_site"] == ALL_SITES else [shard["test_site"]]
    if not set(test) <= set(names):
        raise ValueError(f"shard.test_site {shard['test_site']!r} is not a site of {names}")
    if len(names) < 3:
        raise ValueError(
            f"shard.test_site all / harmonize both need at least 3 sites (test, validation, "
            f"training), the cohort has {names}"
        )
    small = {n: c for n, c in counts.items() if c < MIN_SUBJECTS_PER_SITE}
    if small:
        raise ValueError(
            f"leave-one-site-out: site(s) {small} have fewer than {MIN_SUBJECTS_PER_SITE} "
            "subjects (a held-out site needs an interval over its subjects and ComBat "
            "estimates a site's effects from them); add subjects or drop the site"
        )
    methods = HARMONIZE if shard.get("harmonize") == BOTH else (shard.get("harmonize", "none"),)
    return [fold_suffix(h, site) for h in methods for site in test]


def fold_params(params: Mapping, suffix: str) -> dict:
    """A fold's shard params: ``params`` with its held-out site and harmonisation
    (``harmonize: none`` left out, as :meth:`ShardSettings.subject_params` leaves it);
    ``params`` unchanged (a copy) for the single split."""
    fold = parse_fold(suffix)
    out = dict(params)
    if fold is None:
        return out
    harmonize, site = fold
    out["test_site"] = site
    out.pop("harmonize", None)
    if harmonize != "none":
        out["harmonize"] = harmonize
    return out


def cohort_sites(dataset: Mapping, subjects: list[str]) -> dict[str, str]:
    """``{subject: site}`` known from the settings alone: the synthetic source's
    ``sites`` (subject ``sub-<i>`` at site ``(i - 1) % n_sites``).

    Raises
    ------
    ValueError
        Another source, or a synthetic cohort without ``sites``: the folds need the
        sites when the DAG is built.
    """
    sites = (
        (dataset.get("params") or {}).get("sites") if dataset.get("kind") == "synthetic" else None
    )
    if not sites:
        raise ValueError(
            "shard.test_site all / harmonize both expand into one fold per site when the "
            "DAG is built, which needs the sites from the settings: only the synthetic "
            "source's `sites` give them; for other data run each test_site on its own"
        )
    names = [site["name"] for site in sites]
    out = {}
    for subject in subjects:
        index = int(re.fullmatch(r"sub-0*([0-9]+)", subject).group(1))
        out[subject] = names[(index - 1) % len(names)]
    return out
