"""Brain-like 3D anatomy on the generation grid: tissues, the T1 image and the atlas.

Geometry is built in *normalised head coordinates* ``q = p / H`` (``p`` the
world position in mm, ``H`` the head's semi-axes): the head is the unit
sphere there. A voxel's direction ``u = q / |q|`` picks its atlas region (the
nearest region seed in its hemisphere) and its folding; depths are in mm along
that direction. Nested surfaces, outside in: scalp, skull, CSF, the pial
surface (brain envelope dipped by sulci from a smooth angular folding function,
and cut by the interhemispheric fissure), the grey/white boundary (pial minus
the regional cortical thickness); inside the white matter: lateral ventricles,
deep grey nuclei and optional lesions. Tissues are rendered as partial-volume
fractions, so sub-voxel thickness changes still change voxel intensities.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from modalmerge.data.synthetic.factors import BRAIN_FRACTION, SubjectTruth, cohort_constants
from modalmerge.data.synthetic.params import STREAM_ANATOMY, STREAM_COHORT, SyntheticParams, rng_for

HEAD_FILL = 0.92  # head semi-axes as a fraction of half the field of view
SKULL_OUTER, SKULL_INNER = 0.955, 0.9  # skull surfaces, fractions of head radius
SULCUS_DEPTH = 0.12  # deepest sulcus, fraction of brain radius
FISSURE_DEPTH = 0.45  # depth of the interhemispheric fissure, fraction of brain radius
REGION_SHARPNESS = 25.0  # softmax sharpness of region membership over directions

# T1-weighted tissue intensities (arbitrary units)
T1_INTENSITY = {
    "scalp": 750.0,
    "skull": 120.0,
    "csf": 250.0,
    "gm": 620.0,
    "deep_gm": 720.0,
    "wm": 1000.0,
    "lesion": 420.0,
}


def grid_affine(p: SyntheticParams) -> np.ndarray:
    """RAS voxel-to-world affine of the generation grid, centred on the origin (mm)."""
    v = float(p.voxel_size_mm)
    affine = np.diag([v, v, v, 1.0])
    affine[:3, 3] = -v * (np.asarray(p.grid_shape) - 1) / 2.0
    return affine


@dataclass(frozen=True)
class Template:
    """Subject-independent geometry of the grid (arrays of the grid's shape, or flat)."""

    coords: np.ndarray  # (3, X, Y, Z) world mm
    head_axes: np.ndarray  # (3,) head semi-axes, mm
    rho: np.ndarray  # (X, Y, Z) normalised head radius |q|
    radius: np.ndarray  # (X, Y, Z) head radius along the voxel's direction, mm
    membership: np.ndarray  # (R, X, Y, Z) soft region membership, sums to 1
    folding: np.ndarray  # (X, Y, Z) sulcal depth, mm
    fissure_depth: np.ndarray  # (X, Y, Z) depth of the interhemispheric fissure, mm
    atlas: np.ndarray  # (X, Y, Z) int16, 0 background, 1..R regions


def _partial(depth_mm: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Fraction of a voxel inside a surface, given the voxel centre's depth below it."""
    return np.clip(0.5 + depth_mm / voxel_mm, 0.0, 1.0)


def _ellipsoid_depth(coords: np.ndarray, center, semi_axes) -> np.ndarray:
    """Approximate depth (mm, > 0 inside) of each point below an ellipsoid's surface."""
    d = coords - np.asarray(center, dtype=float).reshape(3, 1, 1, 1)
    q = d / np.asarray(semi_axes, dtype=float).reshape(3, 1, 1, 1)
    rho = np.sqrt(np.sum(q**2, axis=0)) + 1e-6
    return (1.0 - rho) * np.sqrt(np.sum(d**2, axis=0)) / rho


@functools.lru_cache(maxsize=4)
def template(p: SyntheticParams) -> Template:
    """The grid's geometry, folding pattern and atlas (cached; deterministic in ``p``)."""
    cohort = cohort_constants(p)
    shape = tuple(p.grid_shape)
    affine = grid_affine(p)
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    coords = (affine[:3, :3] @ ijk + affine[:3, 3:]).reshape(3, *shape)
    head_axes = HEAD_FILL * np.asarray(shape) * p.voxel_size_mm / 2.0
    q = coords / head_axes.reshape(3, 1, 1, 1)
    rho = np.sqrt(np.sum(q**2, axis=0)) + 1e-6
    radius = np.sqrt(np.sum(coords**2, axis=0)) / rho
    u = q / rho

    # soft membership over region seeds, restricted to the voxel's hemisphere
    cos = np.tensordot(cohort.region_directions, u, axes=(1, 0))  # (R, X, Y, Z)
    n_half = p.regions_per_hemisphere
    left = coords[0] < 0
    cos[:n_half, ~left] = -2.0
    cos[n_half:, left] = -2.0
    logits = REGION_SHARPNESS * (cos - cos.max(axis=0, keepdims=True))
    membership = np.exp(logits)
    membership /= membership.sum(axis=0, keepdims=True)

    # folding: sum of random plane waves over directions, squashed to [0, 1]
    rng = rng_for(p, 0, STREAM_COHORT + 100)
    waves = rng.standard_normal((8, 3))
    waves /= np.linalg.norm(waves, axis=1, keepdims=True)
    freq = rng.uniform(5.0, 8.0, 8)
    phase = rng.uniform(0, 2 * np.pi, 8)
    g = np.zeros(shape)
    for w, f, ph in zip(waves, freq, phase, strict=True):
        g += np.cos(f * np.tensordot(w, u, axes=(0, 0)) + ph)
    g /= np.sqrt(len(freq) / 2.0)
    folding = SULCUS_DEPTH * BRAIN_FRACTION * radius / (1.0 + np.exp(-2.5 * g))

    tpl = Template(
        coords=coords.astype(np.float32),
        head_axes=head_axes,
        rho=rho,
        radius=radius,
        membership=membership.astype(np.float32),
        folding=folding,
        # the fissure is deep over the vertex and shallow towards the base
        fissure_depth=FISSURE_DEPTH * BRAIN_FRACTION * radius * np.clip(0.55 + 0.6 * u[2], 0.05, 1),
        atlas=np.zeros(shape, np.int16),
    )
    # the atlas covers the cortical ribbon of every plausible subject: the union
    # of grey matter in a young thick brain and an old atrophied thin one
    thick = p.thickness_mean_mm + 1.5 * p.thickness_sd_mm + 1.0
    young = _cortex(p, tpl, atrophy=0.0, thickness=thick)
    old = _cortex(p, tpl, atrophy=1.5 * p.atrophy_scale, thickness=thick)
    ribbon = (young[0] - young[1] > 0.15) | (old[0] - old[1] > 0.15)
    atlas = np.where(ribbon, np.argmax(membership, axis=0) + 1, 0).astype(np.int16)
    return Template(**{**tpl.__dict__, "atlas": atlas})


def _cortex(p: SyntheticParams, tpl: Template, atrophy: float, thickness) -> tuple:
    """Partial-volume fractions inside the pial and inside the white surface."""
    envelope = tpl.radius * (BRAIN_FRACTION * (1.0 - atrophy) - tpl.rho)  # depth, mm
    pial = envelope - tpl.folding * (1.0 + 4.0 * atrophy)
    fissure_half_width = 1.0 + 30.0 * atrophy
    medial = (
        np.abs(tpl.coords[0]) - fissure_half_width + np.maximum(0.0, envelope - tpl.fissure_depth)
    )
    pial = np.minimum(pial, medial)
    v = p.voxel_size_mm
    return _partial(pial, v), _partial(pial - thickness, v)


def cortical_surfaces(p: SyntheticParams, truth: SubjectTruth) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume maps (X, Y, Z) inside one subject's pial and inside its white surface.

    The same maps :func:`tissue_fractions` renders the cortex from: their 0.5 level sets
    are the subject's pial and grey/white boundaries (:mod:`modalmerge.data.synthetic.surface`).
    """
    tpl = template(p)
    return _cortex(p, tpl, truth.atrophy, regional_map(tpl, truth.thickness))


def regional_map(tpl: Template, values: np.ndarray) -> np.ndarray:
    """Spread per-region values ``(R,)`` over the grid by soft membership → (X, Y, Z)."""
    return np.tensordot(np.asarray(values, np.float32), tpl.membership, axes=(0, 0))


def tissue_fractions(p: SyntheticParams, truth: SubjectTruth) -> dict[str, np.ndarray]:
    """Partial-volume fraction maps of one subject's tissues (each (X, Y, Z), in [0, 1]).

    Keys: ``scalp``, ``skull``, ``csf``, ``gm`` (cortical), ``deep_gm``, ``wm``,
    ``lesion``; they sum to the head fraction (1 inside the head, 0 outside).
    """
    tpl = template(p)
    v = p.voxel_size_mm
    coords = tpl.coords
    in_head = _partial(tpl.radius * (1.0 - tpl.rho), v)
    in_skull_outer = _partial(tpl.radius * (SKULL_OUTER - tpl.rho), v)
    in_skull_inner = _partial(tpl.radius * (SKULL_INNER - tpl.rho), v)
    thickness = regional_map(tpl, truth.thickness)
    in_pial, in_white = _cortex(p, tpl, truth.atrophy, thickness)

    brain_axes = BRAIN_FRACTION * tpl.head_axes
    vs = truth.ventricle_scale
    ventricles = np.zeros_like(in_white)
    deep = np.zeros_like(in_white)
    for side in (-1.0, 1.0):
        center = brain_axes * np.array([0.11 * side * np.sqrt(vs), 0.02, 0.12])
        semi = brain_axes * np.array([0.06 * vs, 0.28 * np.sqrt(vs), 0.09 * vs])
        ventricles = np.maximum(ventricles, _partial(_ellipsoid_depth(coords, center, semi), v))
        center = brain_axes * np.array([0.14 * side, -0.1, -0.05])
        semi = brain_axes * np.array([0.1, 0.15, 0.1])
        deep = np.maximum(deep, _partial(_ellipsoid_depth(coords, center, semi), v))
    lesion = np.zeros_like(in_white)
    for center_q, r in zip(truth.lesion_centers, truth.lesion_radii_mm, strict=True):
        center = center_q * tpl.head_axes
        dist = np.sqrt(np.sum((coords - center.reshape(3, 1, 1, 1)) ** 2, axis=0))
        lesion = np.maximum(lesion, _partial(r - dist, v))
    ventricles = np.minimum(ventricles, in_white)
    deep = np.minimum(deep, in_white - ventricles)
    lesion = np.minimum(lesion, in_white - ventricles - deep)
    return {
        "scalp": in_head - in_skull_outer,
        "skull": in_skull_outer - in_skull_inner,
        "csf": in_skull_inner - in_pial + ventricles,
        "gm": in_pial - in_white,
        "deep_gm": deep,
        "wm": in_white - ventricles - deep - lesion,
        "lesion": lesion,
    }


def smooth_field(rng: np.random.Generator, tpl: Template, scale: float) -> np.ndarray:
    """A smooth multiplicative field ``exp(quadratic polynomial)`` of log-sd ~ ``scale``."""
    q = tpl.coords / tpl.head_axes.reshape(3, 1, 1, 1)
    x, y, z = q
    basis = np.stack([x, y, z, x * y, y * z, x * z, x**2 - 0.3, y**2 - 0.3, z**2 - 0.3])
    coef = rng.standard_normal(len(basis)) * scale / np.sqrt(len(basis) / 3.0)
    return np.exp(np.tensordot(coef, basis, axes=(0, 0)))


def render_t1(p: SyntheticParams, truth: SubjectTruth, tissues: dict) -> np.ndarray:
    """T1-weighted image (X, Y, Z) float32: tissue mix, bias field and Rician noise."""
    tpl = template(p)
    rng = rng_for(p, truth.index, STREAM_ANATOMY)
    image = sum(T1_INTENSITY[name] * frac for name, frac in tissues.items() if name != "gm")
    wm_aging = 1.0 - 0.04 * (truth.age - 50.0) / 30.0
    image = image + (wm_aging - 1.0) * T1_INTENSITY["wm"] * tissues["wm"]
    gm_intensity = regional_map(tpl, truth.gm_intensity)
    image = image + T1_INTENSITY["gm"] * gm_intensity * tissues["gm"]
    image = image * smooth_field(rng, tpl, 0.12)
    sigma = 0.03 * T1_INTENSITY["wm"]
    real = image + sigma * rng.standard_normal(image.shape)
    imag = sigma * rng.standard_normal(image.shape)
    return np.sqrt(real**2 + imag**2).astype(np.float32)


def atlas_centroids(p: SyntheticParams) -> np.ndarray:
    """World coordinates (R, 3) in mm of each atlas region's centroid."""
    tpl = template(p)
    labels = tpl.atlas.ravel()
    coords = tpl.coords.reshape(3, -1)
    counts = np.bincount(labels, minlength=p.n_regions + 1)[1:]
    if np.any(counts == 0):
        raise ValueError(f"grid_shape {p.grid_shape} is too coarse: some atlas regions are empty")
    sums = np.stack([np.bincount(labels, weights=c, minlength=p.n_regions + 1)[1:] for c in coords])
    return (sums / counts).T


def region_names(p: SyntheticParams) -> list[str]:
    """Atlas region names, label order: ``L_region01 ... R_regionNN``."""
    n = p.regions_per_hemisphere
    return [f"{h}_region{i:02d}" for h in "LR" for i in range(1, n + 1)]


__all__ = [
    "Template",
    "atlas_centroids",
    "cortical_surfaces",
    "grid_affine",
    "region_names",
    "render_t1",
    "template",
    "tissue_fractions",
]
