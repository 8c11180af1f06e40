"""ModalMerge: one modality conditions another through learned cross-attention.

The package is usable on its own::

    from modalmerge import MultiModalModel, Trainer, Visualizer

and every stage of the Snakemake workflow calls one of its functions through
the ``modalmerge`` command line (see :mod:`modalmerge.cli`).
"""

from __future__ import annotations

from modalmerge._version import __version__

__all__ = ["MultiModalModel", "Trainer", "Visualizer", "__version__"]


def __getattr__(name: str):  # lazy: importing the package must not import torch
    if name == "MultiModalModel":
        from modalmerge.models.model import MultiModalModel

        return MultiModalModel
    if name == "Trainer":
        from modalmerge.training.trainer import Trainer

        return Trainer
    if name == "Visualizer":
        from modalmerge.viz.visualizer import Visualizer

        return Visualizer
    raise AttributeError(f"module 'modalmerge' has no attribute {name!r}")
