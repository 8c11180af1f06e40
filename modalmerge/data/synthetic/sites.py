"""Acquisition sites of a synthetic cohort: each site's scanner effects (``sites`` setting).

A site is one scanner and protocol. Subject ``i`` (1-based) belongs to site
``(i - 1) % n_sites`` (round robin: balanced, no random draw, independent of
``n_subjects``). A site may set

- ``intensity_scale``: a global gain of the T1w and BOLD intensities;
- ``bias_gradient``: ``[gx, gy, gz]``, a fixed multiplicative field
  ``exp(g . (x, y, z) / head semi-axes)`` shared by the site's T1w and BOLD
  (a coil profile; on top of each subject's own random bias field);
- ``tsnr`` and ``noise_scale``: the BOLD's thermal tSNR and the scale of its
  non-thermal noise (replace the cohort's values);
- ``smoothing_fwhm_mm``: Gaussian in-plane-and-slice smoothing of the T1w and
  of every BOLD volume (reconstruction filter), in mm;
- ``tr`` and ``n_timepoints``: the BOLD protocol (replace the cohort's);
- ``age_range``: the site's recruitment range of ages, inside the cohort's
  ``age_range`` (the age effect on anatomy stays relative to the cohort's range).

Every effect is deterministic: a site adds no random draw, so each subject's
latent truth is the one it has without sites (except its age when
``age_range`` is set: the same uniform draw mapped onto the site's range).
Without ``sites`` (the default) nothing here changes a byte of the output.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

_SITE_NAME = re.compile(r"^[A-Za-z0-9]+$")
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class SiteParams:
    """One site's scanner effects; None keeps the cohort's setting (see the module doc)."""

    name: str
    intensity_scale: float = 1.0
    bias_gradient: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tsnr: float | None = None
    noise_scale: float | None = None
    smoothing_fwhm_mm: float = 0.0
    tr: float | None = None
    n_timepoints: int | None = None
    age_range: tuple[float, float] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], position: int) -> SiteParams:
        """A site from a config mapping; ValueError naming ``sites[position]`` and the key."""
        where = f"synthetic setting sites[{position}]"
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: must be a mapping with at least a name, got {d!r}")
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        if "name" not in d:
            raise ValueError(f"{where}: needs a name")
        for key in ("bias_gradient", "age_range"):
            if d.get(key) is not None:
                try:
                    d[key] = tuple(d[key])
                except TypeError:
                    raise ValueError(f"{where}.{key}: must be a list, got {d[key]!r}") from None
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
        }


def _number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def validate_sites(sites: tuple, age_range: tuple[float, float]) -> None:
    """Check the ``sites`` setting: distinct alphanumeric names, values in range."""
    names = []
    for k, site in enumerate(sites):
        where = f"synthetic setting sites[{k}]"
        if not isinstance(site, SiteParams):
            raise ValueError(f"{where}: must be a site mapping, got {site!r}")
        if not isinstance(site.name, str) or not _SITE_NAME.match(site.name):
            raise ValueError(f"{where}.name: must be an alphanumeric label, got {site.name!r}")
        names.append(site.name)
        positive = ("intensity_scale", "tsnr", "tr")
        for key in positive:
            v = getattr(site, key)
            if v is not None and (not _number(v) or not np.isfinite(v) or v <= 0):
                raise ValueError(f"{where}.{key}: must be a positive number, got {v!r}")
        for key in ("noise_scale", "smoothing_fwhm_mm"):
            v = getattr(site, key)
            if v is not None and (not _number(v) or not np.isfinite(v) or v < 0):
                raise ValueError(f"{where}.{key}: must be a number >= 0, got {v!r}")
        g = site.bias_gradient
        if len(g) != 3 or not all(_number(v) and abs(v) <= 1 for v in g):
            raise ValueError(f"{where}.bias_gradient: must be three numbers in [-1, 1], got {g!r}")
        n = site.n_timepoints
        if n is not None and (not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 16):
            raise ValueError(f"{where}.n_timepoints: must be an integer >= 16, got {n!r}")
        a = site.age_range
        if a is not None and (
            len(a) != 2
            or not all(_number(v) for v in a)
            or not age_range[0] <= a[0] <= a[1] <= age_range[1]
        ):
            raise ValueError(
                f"{where}.age_range: must be [min, max] inside the cohort's age_range "
                f"{list(age_range)}, got {a!r}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"synthetic setting sites: names must be distinct, got {names}")


def site_of(p, index: int) -> SiteParams | None:
    """Subject ``index``'s site (round robin), or None for a single-site cohort."""
    if not p.sites:
        return None
    return p.sites[(index - 1) % len(p.sites)]


def site_age_range(p, index: int) -> tuple[float, float]:
    """The range subject ``index``'s age is drawn from: its site's, else the cohort's."""
    site = site_of(p, index)
    return p.age_range if site is None or site.age_range is None else site.age_range


def with_site_protocol(p, index: int):
    """``p`` with subject ``index``'s site protocol (tr, n_timepoints, tsnr, noise_scale);
    ``p`` itself for a single-site cohort."""
    site = site_of(p, index)
    if site is None:
        return p
    keys = ("tr", "n_timepoints", "tsnr", "noise_scale")
    return dataclasses.replace(
        p, **{k: getattr(site, k) for k in keys if getattr(site, k) is not None}
    )


def longest_protocol(p):
    """``p`` with the longest run of any site (the cohort's events file covers every run)."""
    if not p.sites:
        return p
    runs = [with_site_protocol(p, k + 1) for k in range(len(p.sites))]
    return max(runs, key=lambda q: q.n_timepoints * q.tr)


def _gain_field(site: SiteParams, coords: np.ndarray, head_axes: np.ndarray) -> np.ndarray:
    """The site's fixed multiplicative field on the grid (X, Y, Z)."""
    q = coords / np.asarray(head_axes).reshape(3, 1, 1, 1)
    return np.exp(np.tensordot(np.asarray(site.bias_gradient, dtype=float), q, axes=(0, 0)))


def _smooth(volume: np.ndarray, fwhm_mm: float, voxel_mm: float) -> np.ndarray:
    """Gaussian smoothing over the three spatial axes; 0 stays 0 outside the head."""
    from scipy.ndimage import gaussian_filter

    if fwhm_mm <= 0:
        return volume
    sigma = fwhm_mm / FWHM_PER_SIGMA / voxel_mm
    sigmas = (sigma, sigma, sigma) + (0.0,) * (volume.ndim - 3)
    out = gaussian_filter(volume.astype(np.float32), sigmas, mode="nearest")
    outside = volume == 0 if volume.ndim == 3 else np.all(volume == 0, axis=3, keepdims=True)
    return np.where(outside, 0.0, out).astype(np.float32)


def scanner_effects(p, site: SiteParams, tpl, t1: np.ndarray, bold):
    """Apply ``site``'s intensity scale, coil field and smoothing to a rendered subject.

    Parameters
    ----------
    p : SyntheticParams
        The subject's parameters (for the voxel size).
    tpl : modalmerge.data.synthetic.anatomy.Template
        The grid (``coords`` in mm, ``head_axes``).
    t1 : ndarray (X, Y, Z)
    bold : modalmerge.data.synthetic.bold.BoldResult

    Returns
    -------
    t1, bold
        The T1w (float32) and a BoldResult whose ``data`` is re-quantised to
        int16 with a new ``slope``; ``noisefree`` (if any) gets the same gain and
        smoothing, so it stays the observed run's expectation.
    """
    gain = (site.intensity_scale * _gain_field(site, tpl.coords, tpl.head_axes)).astype(np.float32)
    t1 = _smooth(t1 * gain, site.smoothing_fwhm_mm, p.voxel_size_mm)
    run = bold.data.astype(np.float32) * np.float32(bold.slope) * gain[..., None]
    run = _smooth(run, site.smoothing_fwhm_mm, p.voxel_size_mm)
    slope = float(run.max()) / 32000.0
    data = np.asfortranarray(np.rint(run / slope).astype(np.int16))
    noisefree = bold.noisefree
    if noisefree is not None:
        noisefree = np.asfortranarray(
            _smooth(noisefree * gain[..., None], site.smoothing_fwhm_mm, p.voxel_size_mm)
        )
    return t1.astype(np.float32), dataclasses.replace(
        bold, data=data, slope=slope, noisefree=noisefree
    )


def site_truth(p, site: SiteParams) -> dict[str, np.ndarray]:
    """The site's settings as truth arrays (``site`` and ``site_*``); ``p`` is the
    subject's parameters after :func:`with_site_protocol` (its tr is the truth's ``tr``)."""
    return {
        "site": np.array(site.name),
        "site_intensity_scale": np.float64(site.intensity_scale),
        "site_bias_gradient": np.asarray(site.bias_gradient, dtype=np.float64),
        "site_tsnr": np.float64(p.tsnr),
        "site_noise_scale": np.float64(p.noise_scale),
        "site_smoothing_fwhm_mm": np.float64(site.smoothing_fwhm_mm),
        "site_tr": np.float64(p.tr),
        "site_n_timepoints": np.int64(p.n_timepoints),
        "site_age_range": np.asarray(site.age_range or p.age_range, dtype=np.float64),
    }
