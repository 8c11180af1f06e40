"""The leave-one-site-out summary: ``site_summary.csv`` and the scores-by-site figure."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from modalmerge.evaluation.sites import site_summary
from modalmerge.viz.figures import save_figure
from modalmerge.viz.site_chart import site_chart


def write_site_summary(
    folds: str | os.PathLike | list,
    out_csv: str | os.PathLike,
    out_png: str | os.PathLike,
    dpi: int = 110,
) -> tuple[Path, Path]:
    """Gather ``<folds>/<harmonize>/<site>/<experiment>/metrics.json`` (or a list of the
    workflow's ``.../loso/<harmonize>/<site>/eval/<experiment>/metrics.json``) into
    ``out_csv`` (:mod:`modalmerge.evaluation.sites`) and draw the primary time-series
    score by site."""
    csv = site_summary(folds, out_csv)
    fig = site_chart(pd.read_csv(csv))
    return csv, save_figure(fig, out_png, dpi=dpi)
