"""Which subjects go to train, val and test: by subject, by time (every subject in every
split) or by site (whole sites per split)."""

from __future__ import annotations

import numpy as np

from modalmerge.data.time_split import SPLITS

__all__ = ["split_subjects"]


def split_subjects(
    subjects: list[str],
    fractions: dict,
    seed: int,
    by: str = "subject",
    sites: dict[str, str] | None = None,
    test_site: str | None = None,
) -> dict[str, list[str]]:
    """Assign subjects to train/val/test, deterministically.

    ``by="subject"``: the sorted subject ids are permuted with
    ``numpy.random.default_rng(seed)`` and cut by ``fractions``
    (largest-remainder rounding; a split with a positive fraction gets at least
    one subject). ``by="time"``: every subject goes to every split with a
    positive fraction (each split then holds one block of each run, see
    :func:`time_blocks`). ``by="site"``: whole sites per split, no site in two
    splits: the subjects of ``test_site`` are the test split; the other sites are
    dealt to train and val as ``by="subject"`` deals subjects, with the shares
    ``train / (train + val)`` and ``val / (train + val)`` (``fractions["test"]``
    is not used), so validation, like test, is a site the model never saw. The
    result does not depend on the order of ``subjects``.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises
    ------
    ValueError
        Duplicate ids, or too few subjects to give every positive split one.
    """
    ids = sorted(subjects)
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate subject ids")
    if by == "time":
        return {s: list(ids) if fractions[s] > 0 else [] for s in SPLITS}
    if by == "site":
        return _split_by_site(ids, fractions, seed, sites, test_site)
    wanted = [s for s in SPLITS if fractions[s] > 0]
    if len(ids) < len(wanted):
        raise ValueError(f"{len(ids)} subject(s) cannot fill the splits {wanted}")
    exact = np.array([fractions[s] * len(ids) for s in SPLITS])
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: len(ids) - counts.sum()]:
        counts[i] += 1
    for i, name in enumerate(SPLITS):  # no positive split left empty
        if fractions[name] > 0 and counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    order = np.random.default_rng(seed).permutation(len(ids))
    bounds = np.cumsum(counts)[:-1]
    return {
        name: sorted(ids[j] for j in part)
        for name, part in zip(SPLITS, np.split(order, bounds), strict=True)
    }


def _split_by_site(
    ids: list[str], fractions: dict, seed: int, sites: dict | None, test_site: str | None
) -> dict[str, list[str]]:
    """``split_subjects(by="site")``: the test site held out whole, val from the others."""
    if sites is None or any(s not in sites for s in ids):
        raise ValueError("split_by site needs every subject's site (participants.tsv: site)")
    names = sorted(set(sites[s] for s in ids))
    if test_site not in names:
        raise ValueError(f"shard.test_site {test_site!r} is not a site of this cohort: {names}")
    if len(names) < 2:
        raise ValueError(f"split_by site needs at least 2 sites, got {names}")
    share = fractions["val"] / (fractions["train"] + fractions["val"])
    rest = [n for n in names if n != test_site]
    try:  # whole sites into train and val, drawn like subjects are
        inner = split_subjects(rest, {"train": 1.0 - share, "val": share, "test": 0.0}, seed)
    except ValueError:
        raise ValueError(
            f"split_by site with a validation share needs at least 3 sites, got {names}"
        ) from None
    return {
        name: sorted(s for s in ids if sites[s] in members)
        for name, members in {**inner, "test": [test_site]}.items()
    }
