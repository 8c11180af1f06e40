"""Data-driven parcellation of a cohort's BOLD runs into an :class:`~modalmerge.data.parcellation.atlases.Atlas`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from modalmerge.data.parcellation.atlases import PARCELLATION_METHODS, Atlas, label_coordinates


def data_driven(
    images: Sequence[str | Path],
    method: str = "ward",
    n_parcels: int = 100,
    smoothing_fwhm: float | None = 4.0,
    random_state: int = 0,
    mask: str | Path | None = None,
) -> Atlas:
    """Parcellate the cohort's BOLD runs with :class:`nilearn.regions.Parcellations`.

    Parameters
    ----------
    images : sequence of paths
        4D BOLD runs on one grid.
    method : {"ward", "kmeans", "hierarchical_kmeans", "rena"}
    n_parcels : int
        Number of regions R.
    smoothing_fwhm : float or None
        Spatial smoothing before clustering, in mm.
    random_state : int
    mask : path, optional
        Brain mask; by default computed from the runs.
    """
    from nilearn.regions import Parcellations

    if method not in PARCELLATION_METHODS:
        raise ValueError(
            f"parcellation method must be one of {sorted(PARCELLATION_METHODS)}, not {method!r}"
        )
    parcellation = Parcellations(
        method=method,
        n_parcels=int(n_parcels),
        smoothing_fwhm=smoothing_fwhm,
        random_state=random_state,
        mask=None if mask is None else str(mask),
        standardize="zscore_sample",
    )
    parcellation.fit([str(p) for p in images])
    image = parcellation.labels_img_
    data = np.asarray(image.dataobj).astype(np.int32)
    image = nib.Nifti1Image(data, image.affine)
    indices = np.unique(data)
    indices = indices[indices != 0]
    labels = [f"{method}_{i:03d}" for i in indices]
    return Atlas(f"{method}_{n_parcels}", labels, label_coordinates(image, indices), image, indices)
