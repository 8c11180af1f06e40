"""Parameters of the synthetic cohort, subject ids and the random streams they seed.

Every random draw of the generator comes from a stream keyed by
``(seed, subject index, purpose)``, so one subject can be generated alone, in
any order, without generating the others.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modalmerge.data.synthetic.sites import SiteParams, validate_sites

# Purposes of the random streams (the third entry of a stream's key).
STREAM_COHORT = 0  # cohort-level constants: folding, atlas seeds, network, paradigm
STREAM_FACTORS = 1  # a subject's latent factors and regional features
STREAM_ANATOMY = 2  # a subject's T1 noise, bias field, lesions
STREAM_BOLD = 3  # a subject's neural process and BOLD noise
STREAM_PLANTED = 4  # planted region links (modalmerge.data.synthetic.regional); only when on
STREAM_CONNECTOME = 5  # structural connectome (modalmerge.data.synthetic.connectome); only when on
STREAM_SURFACE = 6  # surface point sampling (modalmerge.data.synthetic.surface); only when on

# settings added after the default cohort was frozen: left out of to_dict() when off
_OPTIONAL_KEYS = ("planted_links", "planted_link_sd", "atlas_channel")
_CONNECTOME_KEYS = ("connectome", "connectome_coupling")
_TASK_LABEL = re.compile(r"^[A-Za-z0-9]+$")
_SUBJECT = re.compile(r"^sub-(\d+)$")


@dataclass(frozen=True)
class SyntheticParams:
    """Settings of the synthetic cohort (the ``acquire`` section for ``source: synthetic``).

    Attributes
    ----------
    seed : int
        Master seed; the whole cohort is a deterministic function of it and of
        the other settings.
    n_subjects : int
        Number of subjects (``sub-001`` ... ``sub-NNN``).
    voxel_size_mm : float
        Isotropic voxel size of the generation grid (T1, BOLD and atlas), in mm.
    grid_shape : tuple of int
        Generation grid ``(X, Y, Z)`` in voxels (RAS axes). The head ellipsoid
        fills 92 % of the field of view along each axis.
    n_regions : int
        Number of cortical atlas regions, even, split equally across hemispheres.
    n_timepoints : int
        Number of BOLD volumes.
    tr : float
        Repetition time in seconds.
    tsnr : float
        Thermal temporal SNR: mean brain BOLD intensity over the standard
        deviation of the white thermal noise. Physiological noise and neural
        signal lower the measured voxel tSNR below this.
    task : str
        BIDS task label (alphanumeric) used in file names.
    design : str
        ``"block"`` (alternating task blocks and rest) or ``"event"`` (brief
        events with jittered onsets).
    block_s, rest_s : float
        Block design: duration of a task block and of the rest after it, in s.
    n_conditions : int
        1 or 2 trial types (``"left"``, ``"right"``), alternating; the second
        favours the other hemisphere (contralateral responses).
    event_duration_s : float
        Event design: duration of each event in s.
    event_isi_s : tuple of float
        Event design: range ``(min, max)`` of onset-to-onset intervals in s.
    lesion_probability : float
        Probability that a subject has 1-3 white-matter lesions.
    patient_fraction : float
        Expected fraction of subjects in the ``patient`` group.
    age_range : tuple of float
        Range ``(min, max)`` of ages in years (uniform).
    atrophy_scale : float
        Largest typical global atrophy, as a fraction of brain radius lost
        (driven by age and disease severity).
    ventricle_gain : float
        Relative ventricle enlargement per unit of relative atrophy
        (atrophy / atrophy_scale); 0 keeps ventricles at template size.
    thickness_mean_mm, thickness_sd_mm : float
        Cohort mean of regional grey-matter thickness, and the scale of a
        region's subject-specific thickness variation (its between-subject
        standard deviation at fixed age and severity is about 0.9 times this), in mm.
    intensity_sd : float
        Between-subject standard deviation of regional grey-matter T1
        intensity, relative to 1.
    age_effect_mm : float
        Cortical thinning per decade of age, in mm.
    disease_effect_mm : float
        Cortical thinning per unit disease severity in vulnerable regions, in mm.
    amplitude_max : float
        Ceiling of the task-evoked amplitude, percent signal change of a pure
        grey-matter voxel; a region's amplitude is its task gain times
        ``amplitude_max * sigmoid((thickness - thickness_mean_mm) / 0.5 mm)``,
        damped by lesions in the region.
    latency_gain_s : float
        Evoked-response delay in s per 0.1 drop of regional grey-matter intensity.
    coupling_strength : float
        Mean strength of the neural coupling between regions (spectral radius
        of the coupling part of the network's transition matrix), at most 0.4;
        a subject's value is capped at 0.4 so the network stays stable.
    noise_scale : float
        Multiplies every non-thermal noise source (spatially smooth 1/f,
        drift, cardiac and respiratory cycles, voxel-wise AR(1) noise).
    planted_links : int
        Number of planted region links (0: off, the default cohort): each is an
        independent subject latent carried by one source region's grey-matter
        T1 intensity that sets the response shape (latency, condition
        preference) of one distant target region
        (:mod:`modalmerge.data.synthetic.regional`; listed in ``raw/planted_links.tsv``).
    planted_link_sd : float
        Between-subject standard deviation of a source region's grey-matter
        intensity carried by its latent, relative to 1 (0.04: 4 %).
    atlas_channel : bool
        Also write each subject's atlas labels as ``anat/sub-XXX_dseg.nii.gz``:
        a label channel of the image in the shards (the ``region_cnn`` encoder
        pools its features within these regions).
    connectome : bool
        A structural connectome per subject (off by default: the default cohort
        is unchanged): distance-dependent wiring modulated by the subject's
        latents, and the spontaneous activity an Ornstein-Uhlenbeck process with
        ``A = -I + g SC`` (:mod:`modalmerge.data.synthetic.connectome`).
    connectome_coupling : float
        The cohort's mean global coupling ``g`` in (0, 1) (SC has spectral radius 1).
    surface_points : int
        0 (default): off. N > 0: also write each subject's grey/white boundary as a
        point cloud of N points (xyz mm, T1 intensity, thickness proxy, curvature),
        ``anat/sub-XXX_desc-white_pointcloud.npz``
        (:mod:`modalmerge.data.synthetic.surface`): the shards' ``point_cloud``.
    sites : tuple of SiteParams
        Acquisition sites, each with its scanner effects
        (:mod:`modalmerge.data.synthetic.sites`); empty (default): one site, no
        ``site`` column, the output of a cohort without this setting.
    """

    seed: int = 0
    n_subjects: int = 48
    voxel_size_mm: float = 4.0
    grid_shape: tuple[int, int, int] = (36, 44, 36)
    n_regions: int = 16
    n_timepoints: int = 150
    tr: float = 2.0
    tsnr: float = 80.0
    task: str = "motor"
    design: str = "block"
    block_s: float = 20.0
    rest_s: float = 20.0
    n_conditions: int = 2
    event_duration_s: float = 1.0
    event_isi_s: tuple[float, float] = (3.0, 8.0)
    lesion_probability: float = 0.0
    patient_fraction: float = 0.5
    age_range: tuple[float, float] = (20.0, 80.0)
    atrophy_scale: float = 0.06
    ventricle_gain: float = 1.0
    thickness_mean_mm: float = 5.0
    thickness_sd_mm: float = 0.6
    intensity_sd: float = 0.15
    age_effect_mm: float = 0.12
    disease_effect_mm: float = 0.6
    amplitude_max: float = 10.0
    latency_gain_s: float = 0.5
    coupling_strength: float = 0.3
    noise_scale: float = 1.0
    planted_links: int = 0
    planted_link_sd: float = 0.04
    atlas_channel: bool = False
    connectome: bool = False
    connectome_coupling: float = 0.7
    surface_points: int = 0
    sites: tuple[SiteParams, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SyntheticParams:
        """Build parameters from a config mapping; missing keys take their defaults.

        Raises
        ------
        ValueError
            Naming the unknown keys, or the setting whose value is invalid.
        """
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown synthetic setting(s) {unknown}; known settings: {sorted(known)}"
            )
        for key in ("grid_shape", "event_isi_s", "age_range"):
            if key in d:
                try:
                    d[key] = tuple(d[key])
                except TypeError:
                    raise ValueError(f"{key} must be a list, got {d[key]!r}") from None
        if "sites" in d:
            if not isinstance(d["sites"], list | tuple):
                raise ValueError(f"sites must be a list of site mappings, got {d['sites']!r}")
            d["sites"] = tuple(
                s if isinstance(s, SiteParams) else SiteParams.from_dict(s, k)
                for k, s in enumerate(d["sites"])
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain, JSON-ready dict (``sites`` only when set; the
        planted-link options only when on: the default cohort's files stay as they were)."""
        out = {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
            if f.name != "sites"
        }
        if self.sites:
            out["sites"] = [site.to_dict() for site in self.sites]
        if not self.planted_links and not self.atlas_channel:
            for key in _OPTIONAL_KEYS:
                del out[key]
        if not self.connectome:  # off: the default cohort's settings (and hashes) as before
            for key in _CONNECTOME_KEYS:
                del out[key]
        if not self.surface_points:  # added later still: off leaves every file as it was
            del out["surface_points"]
        return out

    @property
    def regions_per_hemisphere(self) -> int:
        return self.n_regions // 2

    @property
    def trial_types(self) -> tuple[str, ...]:
        return ("left", "right")[: self.n_conditions]


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _validate(p: SyntheticParams) -> None:
    # Over 60 lines: one check per SyntheticParams field, each naming its key.
    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"synthetic setting {name}={getattr(p, name)!r}: {why}")

    ints = {"seed": 0, "n_subjects": 1, "n_regions": 2, "n_timepoints": 16, "n_conditions": 1}
    ints["planted_links"] = 0
    for name, low in ints.items():
        v = getattr(p, name)
        if not _is_int(v) or v < low:
            raise bad(name, f"must be an integer >= {low}")
    if p.n_regions % 2:
        raise bad("n_regions", "must be even (regions are split across hemispheres)")
    if p.n_conditions > 2:
        raise bad("n_conditions", "must be 1 or 2")
    positive = (
        "voxel_size_mm",
        "tr",
        "tsnr",
        "event_duration_s",
        "atrophy_scale",
        "thickness_mean_mm",
        "amplitude_max",
    )
    for name in positive:
        v = getattr(p, name)
        if not _is_num(v) or not np.isfinite(v) or v <= 0:
            raise bad(name, "must be a positive number")
    non_negative = (
        "ventricle_gain",
        "thickness_sd_mm",
        "intensity_sd",
        "age_effect_mm",
        "disease_effect_mm",
        "latency_gain_s",
        "coupling_strength",
        "noise_scale",
        "planted_link_sd",
    )
    if not isinstance(p.atlas_channel, bool):
        raise bad("atlas_channel", "must be true or false")
    if not isinstance(p.connectome, bool):
        raise bad("connectome", "must be true or false")
    if not _is_num(p.connectome_coupling) or not 0 < p.connectome_coupling < 1:
        raise bad("connectome_coupling", "must lie in (0, 1): A = -I + g SC is then stable")
    if not _is_int(p.surface_points) or not 0 <= p.surface_points <= 1_000_000:
        raise bad("surface_points", "must be an integer in [0, 1000000] (0: no point clouds)")
    for name in non_negative:
        v = getattr(p, name)
        if not _is_num(v) or not np.isfinite(v) or v < 0:
            raise bad(name, "must be a number >= 0")
    for name in ("lesion_probability", "patient_fraction"):
        v = getattr(p, name)
        if not _is_num(v) or not 0 <= v <= 1:
            raise bad(name, "must be a probability in [0, 1]")
    if p.coupling_strength > 0.4:
        raise bad("coupling_strength", "must be <= 0.4 for a stable network")
    if p.design not in ("block", "event"):
        raise bad("design", "must be 'block' or 'event'")
    if p.design == "block" and not (_is_num(p.block_s) and _is_num(p.rest_s)):
        raise bad("block_s", "block_s and rest_s must be numbers")
    if p.design == "block" and (p.block_s <= 0 or p.rest_s <= 0):
        raise bad("block_s", "block_s and rest_s must be positive")
    if not isinstance(p.task, str) or not _TASK_LABEL.match(p.task):
        raise bad("task", "must be a non-empty alphanumeric BIDS label")
    if len(p.grid_shape) != 3 or not all(_is_int(n) and n >= 8 for n in p.grid_shape):
        raise bad("grid_shape", "must be three integers >= 8")
    for name in ("event_isi_s", "age_range"):
        lo_hi = getattr(p, name)
        if len(lo_hi) != 2 or not all(_is_num(v) for v in lo_hi) or not 0 <= lo_hi[0] <= lo_hi[1]:
            raise bad(name, "must be two numbers [min, max] with 0 <= min <= max")
    if p.design == "event" and p.event_isi_s[0] < p.event_duration_s:
        raise bad("event_isi_s", "the shortest interval must be >= event_duration_s")
    if p.n_timepoints * p.tr < 40:
        raise bad("n_timepoints", "the run must last at least 40 s (n_timepoints * tr)")
    validate_sites(p.sites, p.age_range)
    brain_semi_axis_vox = 0.92 * 0.84 * min(p.grid_shape) / 2
    if brain_semi_axis_vox < 4:
        raise bad("grid_shape", "too small: the brain must span at least 8 voxels per axis")


def as_params(params: Mapping[str, Any] | SyntheticParams | None) -> SyntheticParams:
    """Accept a :class:`SyntheticParams` or a config mapping (validated)."""
    if isinstance(params, SyntheticParams):
        return params
    if params is None or isinstance(params, Mapping):
        return SyntheticParams.from_dict(params)
    raise ValueError(f"synthetic params must be a mapping or SyntheticParams, got {type(params)}")


def subject_ids(params: Mapping[str, Any] | SyntheticParams) -> list[str]:
    """Subject ids of the cohort: ``["sub-001", "sub-002", ...]``.

    Parameters
    ----------
    params : dict or SyntheticParams
        Only ``n_subjects`` is used (validated like every setting).
    """
    p = as_params(params)
    width = max(3, len(str(p.n_subjects)))
    return [f"sub-{i:0{width}d}" for i in range(1, p.n_subjects + 1)]


def subject_index(params: SyntheticParams, subject: str) -> int:
    """The 1-based index of ``subject`` (``"sub-007"`` -> 7); ValueError if not in the cohort."""
    m = _SUBJECT.match(subject) if isinstance(subject, str) else None
    if m is None:
        raise ValueError(f"subject id {subject!r} is not of the form 'sub-001'")
    index = int(m.group(1))
    width = max(3, len(str(params.n_subjects)))
    if not 1 <= index <= params.n_subjects or subject != f"sub-{index:0{width}d}":
        raise ValueError(
            f"subject {subject!r} is not in this cohort (sub-{1:0{width}d} ... "
            f"sub-{params.n_subjects:0{width}d})"
        )
    return index


def rng_for(params: SyntheticParams, subject: int, stream: int) -> np.random.Generator:
    """The random stream ``(seed, subject, stream)``; ``subject=0`` is the cohort."""
    return np.random.default_rng(np.random.SeedSequence([params.seed, subject, stream]))
