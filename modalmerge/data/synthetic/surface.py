"""A subject's grey/white boundary as a point cloud (``surface_points > 0``).

Marching cubes (scikit-image) on the subject's white-matter map gives the grey/white
boundary mesh; marching cubes on its pial map gives the outer surface. Each point carries:

- ``t1_intensity``: the T1 image (trilinear) half the local thickness outward from the
  boundary, i.e. at mid-cortical depth;
- ``thickness_mm``: the distance from the boundary to the nearest pial vertex (a
  thickness proxy: it follows the subject's regional thickness and atrophy, not exactly);
- ``curvature``: the mesh's mean-curvature proxy, the umbrella Laplacian of the vertex
  positions along the outward normal over the squared mean edge length (> 0 on gyral
  crowns, < 0 in sulci).

The mesh is then sampled to exactly ``surface_points`` points, area-weighted over the
triangles with uniform barycentric coordinates (features interpolated from the three
vertices), from the subject's own random stream: any N works, whatever the mesh size.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from modalmerge.data.synthetic.anatomy import cortical_surfaces, grid_affine
from modalmerge.data.synthetic.factors import SubjectTruth
from modalmerge.data.synthetic.params import STREAM_SURFACE, SyntheticParams, rng_for

FEATURE_NAMES = ("t1_intensity", "thickness_mm", "curvature")


def _mesh(volume: np.ndarray, voxel_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (voxel units), faces and outward unit normals of ``volume``'s 0.5 level set."""
    verts, faces, normals, _ = marching_cubes(volume, level=0.5, allow_degenerate=False)
    # the map is high inside: normals along the descent point outward
    return verts, faces, normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)


def mean_curvature(verts: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Umbrella-operator mean-curvature proxy per vertex (1 / length units of ``verts``)."""
    n = len(verts)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    ones = np.ones(len(edges))
    adjacency = sp.coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    adjacency = adjacency + adjacency.T
    degree = np.asarray(adjacency.sum(axis=1)).ravel().clip(1)
    umbrella = adjacency @ verts / degree[:, None] - verts  # points inward on a convex crown
    edge_length = np.linalg.norm(verts[edges[:, 0]] - verts[edges[:, 1]], axis=1).mean()
    return -np.einsum("ij,ij->i", umbrella, normals) / edge_length**2


def surface_point_cloud(
    p: SyntheticParams, truth: SubjectTruth, t1: np.ndarray, n_points: int
) -> np.ndarray:
    """The subject's grey/white boundary sampled to ``(n_points, 3 + 3)`` float32 (mm, features)."""
    in_pial, in_white = cortical_surfaces(p, truth)
    v = float(p.voxel_size_mm)
    verts, faces, normals = _mesh(in_white, v)
    pial_verts, _, _ = _mesh(in_pial, v)
    thickness = cKDTree(pial_verts * v).query(verts * v)[0]  # mm
    curvature = mean_curvature(verts, faces, normals) / v  # 1/mm
    mid = verts + normals * (0.5 * thickness / v)[:, None]  # mid-cortical depth, voxels
    intensity = ndi.map_coordinates(t1, mid.T, order=1, mode="nearest")
    features = np.stack([intensity, thickness, curvature], axis=1)

    rng = rng_for(p, truth.index, STREAM_SURFACE)
    corners = verts[faces]  # (n_faces, 3, 3)
    area = 0.5 * np.linalg.norm(
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
    )
    chosen = rng.choice(len(faces), size=n_points, p=area / area.sum())
    r1, r2 = rng.random((2, n_points))
    s = np.sqrt(r1)
    weights = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)  # uniform on each triangle
    tri = faces[chosen]
    xyz_vox = np.einsum("nk,nkd->nd", weights, verts[tri])
    feats = np.einsum("nk,nkd->nd", weights, features[tri])
    affine = grid_affine(p)
    xyz = xyz_vox @ affine[:3, :3].T + affine[:3, 3]
    return np.concatenate([xyz, feats], axis=1).astype(np.float32)


__all__ = ["FEATURE_NAMES", "mean_curvature", "surface_point_cloud"]
