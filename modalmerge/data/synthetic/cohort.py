"""Synthetic cohort in BIDS layout, with its generating truth (the ``acquire`` stage).

Each subject is a deterministic function of ``(params, subject index)``:
:func:`write_subject` neither reads what :func:`write_cohort` wrote nor
generates other subjects. Layout under the dataset root (docs/architecture.md §2)::

    raw/participants.tsv, raw/dataset_description.json, raw/task-<task>_events.tsv
    raw/sub-XXX/anat/sub-XXX_T1w.nii.gz
    raw/sub-XXX/func/sub-XXX_task-<task>_bold.nii.gz (+ _bold.json)
    raw/sub-XXX/sub-XXX_description.txt
    atlas/atlas.nii.gz, atlas/labels.tsv
    truth/sub-XXX.npz, truth/sub-XXX_bold-noisefree.nii.gz
    raw/derivatives/connectome/sub-XXX_desc-sc_connectome.tsv (only with connectome: true)

Example
-------
>>> from modalmerge.data.synthetic.cohort import SyntheticParams, subject_ids, write_cohort, write_subject
>>> params = SyntheticParams(n_subjects=4)
>>> write_cohort(params, root)                        # doctest: +SKIP
>>> for subject in subject_ids(params):               # doctest: +SKIP
...     write_subject(params, subject, root)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge._version import __version__
from modalmerge.data.point_clouds import point_cloud_name, write_point_cloud
from modalmerge.data.synthetic.anatomy import (
    atlas_centroids,
    grid_affine,
    region_names,
    render_t1,
    template,
    tissue_fractions,
)
from modalmerge.data.synthetic.bold import render_bold
from modalmerge.data.synthetic.connectome import connectome_truth
from modalmerge.data.synthetic.factors import FEATURE_NAMES, subject_truth
from modalmerge.data.synthetic.params import (
    SyntheticParams,
    as_params,
    subject_ids,
    subject_index,
)
from modalmerge.data.synthetic.regional import links_table
from modalmerge.data.synthetic.sites import (
    longest_protocol,
    scanner_effects,
    site_of,
    site_truth,
    with_site_protocol,
)
from modalmerge.data.synthetic.task import task_events
from modalmerge.data.synthetic.text import describe_subject
from modalmerge.io import atomic_path

__all__ = ["SyntheticParams", "subject_ids", "write_cohort", "write_subject"]

BIDS_VERSION = "1.9.0"


def _save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, zooms=None, slope=None) -> None:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if zooms is not None:
        img.header.set_zooms(zooms)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _save_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _save_json(obj: Any, path: Path) -> None:
    _save_text(json.dumps(obj, indent=2) + "\n", path)


def _save_tsv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.6g")


def write_cohort(params: Mapping[str, Any] | SyntheticParams, root: str | Path) -> None:
    """Write the cohort-level files: participants, dataset description, events, atlas.

    Parameters
    ----------
    params : dict or SyntheticParams
        Cohort settings (validated; see :class:`SyntheticParams`).
    root : path
        Dataset root, e.g. ``results/synthetic``; writes ``raw/participants.tsv``
        (participant_id, age in years, sex F/M, group control/patient, and
        ``site`` when ``sites`` is set),
        ``raw/dataset_description.json``, ``raw/task-<task>_events.tsv`` (onset
        and duration in s, trial_type), ``atlas/atlas.nii.gz`` (int16 labels
        1..R on the generation grid, 0 outside the cortical ribbon) and
        ``atlas/labels.tsv`` (index, name, x, y, z: region centroid in mm).
    """
    p = as_params(params)
    root = Path(root)
    rows = []
    for subject in subject_ids(p):
        truth = subject_truth(p, subject_index(p, subject))  # O(R^2) each, no images
        site = site_of(p, subject_index(p, subject))
        rows.append((subject, round(truth.age, 1), truth.sex, truth.group))
        rows[-1] += () if site is None else (site.name,)
    columns = ["participant_id", "age", "sex", "group"] + (["site"] if p.sites else [])
    participants = pd.DataFrame(rows, columns=columns)
    description = {
        "Name": "ModalMerge synthetic cohort",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [
            {
                "Name": "modalmerge.data.synthetic.cohort",
                "Version": __version__,
                "Description": "synthetic anatomy and task BOLD with known truth; "
                f"settings: {json.dumps(p.to_dict(), sort_keys=True)}",
            }
        ],
    }
    affine = grid_affine(p)
    centroids = atlas_centroids(p)  # validates that every region is non-empty
    labels = pd.DataFrame(
        {
            "index": np.arange(1, p.n_regions + 1),
            "name": region_names(p),
            "x": np.round(centroids[:, 0], 2),
            "y": np.round(centroids[:, 1], 2),
            "z": np.round(centroids[:, 2], 2),
        }
    )
    _save_tsv(participants, root / "raw" / "participants.tsv")
    _save_json(description, root / "raw" / "dataset_description.json")
    _save_tsv(task_events(longest_protocol(p)), root / "raw" / f"task-{p.task}_events.tsv")
    _save_nifti(template(p).atlas, affine, root / "atlas" / "atlas.nii.gz")
    _save_tsv(labels, root / "atlas" / "labels.tsv")
    if p.planted_links:
        _save_tsv(links_table(p, region_names(p)), root / "raw" / "planted_links.tsv")


def write_subject(
    params: Mapping[str, Any] | SyntheticParams, subject: str, root: str | Path
) -> None:
    """Generate one subject and write its BIDS files and truth.

    Parameters
    ----------
    params : dict or SyntheticParams
        Cohort settings (validated).
    subject : str
        Subject id in the cohort, e.g. ``"sub-007"`` (see :func:`subject_ids`).
    root : path
        Dataset root. Writes ``raw/sub-XXX/anat/sub-XXX_T1w.nii.gz`` (float32,
        X×Y×Z), ``raw/sub-XXX/func/sub-XXX_task-<task>_bold.nii.gz`` (int16 with
        ``scl_slope``, X×Y×Z×T, 4th zoom = TR) and its ``_bold.json``
        (RepetitionTime, TaskName, SliceTiming), ``raw/sub-XXX/sub-XXX_description.txt``
        and ``truth/sub-XXX.npz`` with

        - ``evoked`` (T, R) noise-free task-evoked regional signal, percent signal
          change of a pure grey-matter voxel, volume t at t·TR;
        - ``spontaneous`` (T, R) the spontaneous regional signal, same units;
        - ``amplitude`` (R,) percent, ``latency`` (R,) s, ``coupling`` (R, R);
        - ``structural`` (R, F) true regional features named by ``feature_names``
          (thickness_mm, gm_intensity, lesion_ml);
        - ``condition_weights`` (C, R) with ``trial_types``; ``region_labels``,
          ``region_names``; ``tr``;
        - latent factors: ``age``, ``sex``, ``group``, ``severity``,
          ``brain_factor``, ``regional_factors``, ``atrophy``,
          ``ventricle_scale``, ``coupling_gain``, ``lesion_centers_mm`` (n, 3),
          ``lesion_radii_mm``, ``lesion_labels``;
        - with ``sites``: ``site`` and its scanner settings ``site_*``
          (:func:`modalmerge.data.synthetic.sites.site_truth`);
        - with ``connectome``: ``sc`` (R, R), ``connectome_g`` and ``fc_neural``
          (R, R), the neural process's FC truth
          (:func:`modalmerge.data.synthetic.connectome.connectome_truth`); the SC is
          also written as ``raw/derivatives/connectome/sub-XXX_desc-sc_connectome.tsv``
          (a ``region`` column, then one column per region, label order);

        and ``truth/sub-XXX_bold-noisefree.nii.gz``: the noise-free run
        (:func:`modalmerge.data.synthetic.bold.render_bold`), float32 on the BOLD
        run's grid, affine and zooms (4th = TR), in its intensity units: what the
        subject's truth determines of the observed run (tissue baseline, bias
        field and the evoked response through the same partial volumes), with
        spontaneous activity, noise, clipping and quantisation off. The evaluate
        stage preprocesses and parcellates it like the observed run: the
        noise ceiling and the ``oracle`` predictor.

        With ``surface_points`` N > 0 also ``raw/sub-XXX/anat/sub-XXX_desc-white_pointcloud.npz``:
        the grey/white boundary as N points (:mod:`modalmerge.data.synthetic.surface`).

    Raises
    ------
    ValueError
        If ``subject`` is not in the cohort or a setting is invalid.
    """
    # Over 60 lines: one subject's files from one set of random draws in a fixed order (reproducible cohorts).
    p = as_params(params)
    index = subject_index(p, subject)
    site = site_of(p, index)
    p = with_site_protocol(p, index)  # the site's tr, n_timepoints, tsnr, noise_scale
    root = Path(root)
    truth = subject_truth(p, index)
    tissues = tissue_fractions(p, truth)
    t1 = render_t1(p, truth, tissues)
    bold = render_bold(p, truth, tissues, noisefree=True)
    if site is not None:
        t1, bold = scanner_effects(p, site, template(p), t1, bold)
    names = region_names(p)
    affine = grid_affine(p)
    v = float(p.voxel_size_mm)

    subject_dir = root / "raw" / subject
    bold_stem = f"{subject}_task-{p.task}_bold"
    n_slices = p.grid_shape[2]
    sidecar = {
        "RepetitionTime": float(p.tr),
        "TaskName": p.task,
        "SliceTiming": [round(k * p.tr / n_slices, 6) for k in range(n_slices)],
        "SliceEncodingDirection": "k",
    }
    truth_arrays = {
        "evoked": bold.evoked.astype(np.float32),
        "spontaneous": bold.spontaneous.astype(np.float32),
        "amplitude": truth.amplitude,
        "latency": truth.latency,
        "coupling": truth.coupling,
        "structural": truth.structural,
        "feature_names": np.array(FEATURE_NAMES),
        "condition_weights": truth.condition_weights,
        "trial_types": np.array(p.trial_types),
        "region_labels": np.arange(1, p.n_regions + 1),
        "region_names": np.array(names),
        "tr": np.float64(p.tr),
        "age": np.float64(truth.age),
        "sex": np.array(truth.sex),
        "group": np.array(truth.group),
        "severity": np.float64(truth.severity),
        "brain_factor": np.float64(truth.brain_factor),
        "regional_factors": truth.regional_factors,
        "atrophy": np.float64(truth.atrophy),
        "ventricle_scale": np.float64(truth.ventricle_scale),
        "coupling_gain": np.float64(truth.coupling_gain),
        "lesion_centers_mm": (truth.lesion_centers * template(p).head_axes).reshape(-1, 3),
        "lesion_radii_mm": truth.lesion_radii_mm,
        "lesion_labels": truth.lesion_regions + 1,
    }
    if truth.planted_latents is not None:
        truth_arrays["planted_latents"] = truth.planted_latents
    if site is not None:
        truth_arrays.update(site_truth(p, site))
    if truth.connectome is not None:
        truth_arrays.update(connectome_truth(truth))
        _save_tsv(
            pd.DataFrame(truth.connectome, index=names, columns=names)
            .rename_axis("region")
            .reset_index(),
            root / "raw" / "derivatives" / "connectome" / f"{subject}_desc-sc_connectome.tsv",
        )

    _save_nifti(t1, affine, subject_dir / "anat" / f"{subject}_T1w.nii.gz")
    if p.atlas_channel:  # the atlas labels on the subject's grid: a label channel
        _save_nifti(template(p).atlas, affine, subject_dir / "anat" / f"{subject}_dseg.nii.gz")
    if p.surface_points:  # the grey/white boundary as a point cloud (after the T1: reads it)
        from modalmerge.data.synthetic import surface  # scikit-image: only when asked

        cloud = surface.surface_point_cloud(p, truth, t1, p.surface_points)
        path = subject_dir / "anat" / point_cloud_name(subject)
        write_point_cloud(path, cloud, surface.FEATURE_NAMES)
    _save_nifti(
        bold.data,
        affine,
        subject_dir / "func" / f"{bold_stem}.nii.gz",
        zooms=(v, v, v, float(p.tr)),
        slope=bold.slope,
    )
    _save_json(sidecar, subject_dir / "func" / f"{bold_stem}.json")
    _save_text(
        describe_subject(p, truth, subject, names), subject_dir / f"{subject}_description.txt"
    )
    _save_nifti(
        bold.noisefree,
        affine,
        root / "truth" / f"{subject}_bold-noisefree.nii.gz",
        zooms=(v, v, v, float(p.tr)),
    )
    with atomic_path(root / "truth" / f"{subject}.npz") as tmp:
        np.savez_compressed(tmp, **truth_arrays)
