"""Latent factors of the synthetic cohort and the truths they generate.

Cohort-level constants (regional baseline thickness, disease vulnerability,
network communities and coupling template, task gains) come from the cohort
stream; each subject's latent factors (age, sex, disease liability, brain
health, regional factors, lesions) from the subject's own stream. From these,
:func:`subject_truth` derives the regional features (cortical thickness, grey
matter intensity, lesion load) and, from the features, the evoked amplitude
(a saturating function of thickness), the response latency (a function of grey
matter intensity) and the subject's coupling matrix.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtri

from modalmerge.data.synthetic.params import (
    STREAM_COHORT,
    STREAM_FACTORS,
    SyntheticParams,
    rng_for,
)
from modalmerge.data.synthetic.sites import site_age_range

FEATURE_NAMES = ("thickness_mm", "gm_intensity", "lesion_ml")
N_REGIONAL_FACTORS = 3
BRAIN_FRACTION = 0.84  # brain envelope radius as a fraction of the head radius
THICKNESS_WIDTH_MM = 0.5  # width of the amplitude's sigmoid in thickness
NEURAL_AR = 0.55  # self-persistence of the regional neural process per TR
MAX_COUPLING_RADIUS = 0.4  # NEURAL_AR + this < 1 keeps the network stable


@dataclass(frozen=True)
class Cohort:
    """Constants shared by every subject of a cohort (arrays over R regions)."""

    region_directions: np.ndarray  # (R, 3) unit vectors, normalised head coordinates
    base_thickness: np.ndarray  # (R,) mm
    vulnerability: np.ndarray  # (R,) in [0, 1], disease thinning weight
    loadings: np.ndarray  # (R, N_REGIONAL_FACTORS), rows of unit norm
    community: np.ndarray  # (R,) int network community
    gain: np.ndarray  # (R,) signed task gain (task-positive > 0, default-mode-like < 0)
    condition_weights: np.ndarray  # (C, R) weight of each condition in each region
    base_latency: np.ndarray  # (R,) s
    coupling_template: np.ndarray  # (R, R) symmetric, zero diagonal, spectral radius 1


def region_directions(n_regions: int) -> np.ndarray:
    """Seed directions of the atlas regions: an equal-area spiral on each hemisphere.

    Returns
    -------
    ndarray, shape (R, 3)
        Unit vectors (x, y, z) in normalised head coordinates; rows ``0..R/2-1``
        are the left hemisphere (x < 0), the rest their mirror images on the right.
    """
    n = n_regions // 2
    i = np.arange(n) + 0.5
    x = i / n * 0.9 + 0.05  # lateral coordinate, equal-area bands from medial to lateral
    angle = np.pi * (3.0 - np.sqrt(5.0)) * np.arange(n)
    s = np.sqrt(1.0 - x**2)
    right = np.stack([x, s * np.cos(angle), s * np.sin(angle)], axis=1)
    left = right * np.array([-1.0, 1.0, 1.0])
    return np.concatenate([left, right]).astype(np.float64)


@functools.lru_cache(maxsize=8)
def cohort_constants(p: SyntheticParams) -> Cohort:
    """The cohort's shared constants, a deterministic function of ``p`` (cached)."""
    rng = rng_for(p, 0, STREAM_COHORT)
    n_half = p.regions_per_hemisphere
    directions = region_directions(p.n_regions)

    def bilateral(values: np.ndarray, jitter: float) -> np.ndarray:
        # homologous regions share a value, with a small asymmetry
        both = np.concatenate([values, values])
        return both + jitter * rng.standard_normal(2 * n_half)

    base_thickness = p.thickness_mean_mm + bilateral(0.5 * rng.standard_normal(n_half), 0.1)
    vulnerability = np.clip(bilateral(rng.uniform(0, 1, n_half), 0.05), 0, 1)
    loadings = rng.standard_normal((p.n_regions, N_REGIONAL_FACTORS))
    loadings /= np.linalg.norm(loadings, axis=1, keepdims=True)
    n_comm = min(4, n_half)
    community_half = np.arange(n_half) % n_comm
    rng.shuffle(community_half)
    community = np.concatenate([community_half, community_half])

    community_gain = np.array([1.0, -0.6, 0.5, -0.25])[:n_comm]
    gain = community_gain[community] * bilateral(rng.uniform(0.7, 1.3, n_half), 0.05)
    hemisphere = np.repeat([0, 1], n_half)  # 0 left, 1 right
    if p.n_conditions == 1:
        condition_weights = np.ones((1, p.n_regions))
    else:  # "left" drives the right hemisphere more, "right" the left
        contra = np.where(hemisphere == 1, 1.0, 0.45)
        condition_weights = np.stack([contra, contra[::-1].copy()])
        # default-mode-like regions deactivate for any condition
        condition_weights[:, community == 1] = 1.0
    base_latency = bilateral(rng.uniform(-0.5, 0.5, n_half), 0.1)

    same = community[:, None] == community[None, :]
    homologous = np.abs(np.arange(p.n_regions)[:, None] - np.arange(p.n_regions)) == n_half
    proximity = np.exp(-(1.0 - directions @ directions.T) / 0.5)
    # task-positive (0) and default-mode-like (1) communities inhibit each other
    opposed = np.isin(community[:, None] + community[None, :], [1]) & ~same
    template = (0.05 + 0.95 * same + 0.6 * homologous - 0.35 * opposed) * proximity
    weights = rng.uniform(0.6, 1.4, (p.n_regions, p.n_regions))
    template = template * (weights + weights.T) / 2
    np.fill_diagonal(template, 0.0)
    template /= np.max(np.abs(np.linalg.eigvalsh(template)))
    return Cohort(
        region_directions=directions,
        base_thickness=base_thickness,
        vulnerability=vulnerability,
        loadings=loadings,
        community=community,
        gain=gain,
        condition_weights=condition_weights,
        base_latency=base_latency,
        coupling_template=template,
    )


@dataclass(frozen=True)
class SubjectTruth:
    """One subject's latent factors, regional features and generating parameters."""

    index: int
    age: float  # years
    sex: str  # "F" or "M"
    group: str  # "control" or "patient"
    severity: float  # disease severity, 0 for controls
    brain_factor: float  # general brain health, standard normal
    regional_factors: np.ndarray  # (N_REGIONAL_FACTORS,) standard normal
    atrophy: float  # fraction of brain radius lost
    ventricle_scale: float  # ventricle size relative to the template (>= ~0.8)
    coupling_gain: float  # subject's global coupling strength (spectral radius scale)
    lesion_centers: np.ndarray  # (n_lesions, 3) in normalised head coordinates
    lesion_radii_mm: np.ndarray  # (n_lesions,)
    lesion_regions: np.ndarray  # (n_lesions,) 0-based region index
    structural: np.ndarray  # (R, F) regional features, columns FEATURE_NAMES
    amplitude: np.ndarray  # (R,) evoked amplitude, percent signal change
    latency: np.ndarray  # (R,) evoked-response delay, s
    coupling: np.ndarray  # (R, R) effective coupling of the neural process
    condition_weights: np.ndarray  # (C, R) weight of each condition in each region
    planted_latents: np.ndarray | None = None  # (K,) planted link latents (regional.py)
    #: (R, R) structural connectome (connectome.py; only with ``connectome: true``, when
    #: ``coupling`` is ``connectome_g * connectome``: the OU drift's off-diagonal part)
    connectome: np.ndarray | None = None
    connectome_g: float | None = None  # the subject's global coupling g

    @property
    def thickness(self) -> np.ndarray:
        return self.structural[:, 0]

    @property
    def gm_intensity(self) -> np.ndarray:
        return self.structural[:, 1]


def subject_truth(p: SyntheticParams, index: int) -> SubjectTruth:
    """Draw subject ``index``'s latent factors and derive its regional truths (O(R^2))."""
    # Over 60 lines: every latent of a subject drawn from one stream in a fixed order (reproducible cohorts).
    cohort = cohort_constants(p)
    rng = rng_for(p, index, STREAM_FACTORS)
    n_regions = p.n_regions
    age = float(rng.uniform(*site_age_range(p, index)))
    sex = "F" if rng.random() < 0.5 else "M"
    liability = rng.standard_normal()
    threshold = ndtri(1.0 - p.patient_fraction) if 0 < p.patient_fraction < 1 else None
    if threshold is None:
        patient = p.patient_fraction >= 1
    else:
        patient = bool(liability > threshold)
    severity = float(0.4 + 0.6 * abs(rng.standard_normal())) if patient else 0.0
    brain_factor = float(rng.standard_normal())
    regional_factors = rng.standard_normal(N_REGIONAL_FACTORS)
    regional_noise = rng.standard_normal(n_regions)
    intensity_noise = rng.standard_normal(n_regions)
    atrophy_noise = rng.standard_normal()
    ventricle_noise = rng.standard_normal()
    coupling_noise = rng.standard_normal()

    age_span = max(p.age_range[1] - p.age_range[0], 1e-6)
    age_rel = (age - p.age_range[0]) / age_span
    relative_atrophy = np.clip(
        0.6 * age_rel + 0.5 * severity - 0.15 * brain_factor + 0.1 * atrophy_noise, 0.0, 2.0
    )
    atrophy = float(p.atrophy_scale * relative_atrophy)
    ventricle_scale = float(
        max(0.7, 1.0 + p.ventricle_gain * relative_atrophy + 0.12 * ventricle_noise)
    )

    # lesions: 1-3 white-matter spheres, drawn only if the subject has any
    n_lesions = int(rng.integers(1, 4)) if rng.random() < p.lesion_probability else 0
    directions = rng.standard_normal((n_lesions, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True) + 1e-12
    depth = rng.uniform(0.35, 0.6, (n_lesions, 1)) * BRAIN_FRACTION
    lesion_centers = directions * depth
    lesion_radii = rng.uniform(4.0, 9.0, n_lesions)
    lesion_regions = np.array(
        [_nearest_region(cohort.region_directions, d) for d in directions], dtype=np.int64
    )
    lesion_ml = np.zeros(n_regions)
    np.add.at(lesion_ml, lesion_regions, 4.0 / 3.0 * np.pi * lesion_radii**3 / 1000.0)

    regional = 0.6 * cohort.loadings @ regional_factors + 0.6 * regional_noise
    thickness = (
        cohort.base_thickness
        + p.thickness_sd_mm * (regional + 0.3 * brain_factor)
        - p.age_effect_mm * (age - 50.0) / 10.0
        - p.disease_effect_mm * severity * cohort.vulnerability
    )
    thickness = np.maximum(thickness, 1.0)
    # hemispheric asymmetry of grey-matter intensity, one latent per subject: through
    # _subject_condition_weights it sets which hemifield all task regions prefer
    laterality = rng.standard_normal()
    hemisphere_sign = np.where(np.arange(n_regions) < p.regions_per_hemisphere, 1.0, -1.0)
    gm_intensity = (
        1.0
        + p.intensity_sd
        * (0.5 * intensity_noise + 0.4 * brain_factor + 0.8 * laterality * hemisphere_sign)
        - 0.01 * (age - 50.0) / 10.0
    )
    structural = np.stack([thickness, gm_intensity, lesion_ml], axis=1)

    saturation = expit((thickness - p.thickness_mean_mm) / THICKNESS_WIDTH_MM)
    amplitude = cohort.gain * p.amplitude_max * saturation * np.exp(-lesion_ml / 1.5)
    latency = cohort.base_latency + p.latency_gain_s * (1.0 - gm_intensity) / 0.1
    latency = np.clip(latency, -2.0, 4.0)

    condition_weights = _subject_condition_weights(p, cohort, gm_intensity)

    integrity = np.sqrt(np.clip(thickness / p.thickness_mean_mm, 0.3, 1.5))
    coupling_gain = float(
        p.coupling_strength
        * np.exp(0.15 * coupling_noise)
        * (1.0 - 0.4 * min(relative_atrophy, 1.5) / 1.5)
    )
    coupling = coupling_gain * cohort.coupling_template * np.outer(integrity, integrity)
    radius = np.max(np.abs(np.linalg.eigvalsh(coupling)))
    if radius > MAX_COUPLING_RADIUS:  # keep the network stable whatever the draws
        coupling *= MAX_COUPLING_RADIUS / radius
    truth = SubjectTruth(
        index=index,
        age=age,
        sex=sex,
        group="patient" if patient else "control",
        severity=severity,
        brain_factor=brain_factor,
        regional_factors=regional_factors,
        atrophy=atrophy,
        ventricle_scale=ventricle_scale,
        coupling_gain=coupling_gain,
        lesion_centers=lesion_centers,
        lesion_radii_mm=lesion_radii,
        lesion_regions=lesion_regions,
        structural=structural,
        amplitude=amplitude,
        latency=latency,
        coupling=coupling,
        condition_weights=condition_weights,
    )
    if p.connectome:
        truth = _with_connectome(p, truth, integrity, float(relative_atrophy))
    if not p.planted_links:
        return truth
    from modalmerge.data.synthetic.regional import apply_planted_links  # imports this module

    return apply_planted_links(p, truth)


def _with_connectome(
    p: SyntheticParams, truth: SubjectTruth, integrity: np.ndarray, relative_atrophy: float
) -> SubjectTruth:
    """``truth`` with its structural connectome, and the coupling ``g SC`` of the OU drift."""
    from modalmerge.data.synthetic.anatomy import atlas_centroids  # imports this module
    from modalmerge.data.synthetic.connectome import structural_connectome

    sc, g = structural_connectome(p, atlas_centroids(p), truth.index, integrity, relative_atrophy)
    return dataclasses.replace(truth, coupling=g * sc, connectome=sc, connectome_g=g)


LATERALITY_GAIN = 0.9  # share of a region's condition preference set by its anatomy


def _subject_condition_weights(
    p: SyntheticParams, cohort: Cohort, gm_intensity: np.ndarray
) -> np.ndarray:
    """A subject's (C, R) condition weights: the cohort's contralateral pattern, tilted
    by each region's grey-matter intensity relative to its homologue.

    A region brighter than its homologue prefers the condition its hemisphere
    answers less in the cohort pattern, so the SHAPE of its evoked time course (not
    only its size) differs between subjects and is predictable from the anatomy.
    Default-mode-like regions (community 1) keep equal weights.
    """
    weights = cohort.condition_weights
    if weights.shape[0] != 2:
        return weights.copy()
    n_half = p.regions_per_hemisphere
    homologue = np.roll(np.arange(p.n_regions), n_half)
    asymmetry = (gm_intensity - gm_intensity[homologue]) / max(p.intensity_sd, 1e-6)
    tilt = expit(2.0 * asymmetry)  # 0.5 for symmetric anatomy
    preference = weights[0] / (weights[0] + weights[1])  # cohort's share of condition 0
    share = (1.0 - LATERALITY_GAIN) * preference + LATERALITY_GAIN * tilt
    total = weights[0] + weights[1]
    subject = np.stack([share * total, (1.0 - share) * total])
    fixed = cohort.community == 1
    subject[:, fixed] = weights[:, fixed]
    return subject


def _nearest_region(directions: np.ndarray, u: np.ndarray) -> int:
    """0-based region whose seed direction is closest to ``u``, in ``u``'s hemisphere."""
    n_half = len(directions) // 2
    offset = n_half if u[0] >= 0 else 0
    return offset + int(np.argmax(directions[offset : offset + n_half] @ u))
