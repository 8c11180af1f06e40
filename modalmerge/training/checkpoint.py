"""Training checkpoints: plain, atomically written, loadable with ``weights_only=True``.

A checkpoint holds only tensors, dicts, lists, numbers, strings and ``None``, so
``torch.load(path, weights_only=True)`` reads it without running pickled code.
Random-number-generator states (torch, CUDA, numpy, Python, data-loader
generators) are converted to tensors for that reason; :func:`capture_rng_state`
and :func:`restore_rng_state` do the round trip.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalmerge.io import InputError, atomic_path, require_file

CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = (
    "format_version",
    "model_config",
    "model_state",
    "optimizer_state",
    "scheduler_state",
    "epoch",
    "best_val_loss",
    "best_epoch",
    "epochs_without_improvement",
    "best_model_state",
    "stopped_early",
    "rng",
    "rank_rng",
    "scaler_state",
    "history",
)


def _numpy_state_to_tensors() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - user code seeds the global one
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _numpy_state_from_tensors(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002
        (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
    )


def _python_state_to_tensors() -> dict[str, Any]:
    version, internal, gauss_next = random.getstate()
    return {
        "version": int(version),
        "internal": torch.tensor(internal, dtype=torch.int64),
        "gauss_next": gauss_next,
    }


def _python_state_from_tensors(state: dict[str, Any]) -> None:
    internal = tuple(int(v) for v in state["internal"].tolist())
    random.setstate((state["version"], internal, state["gauss_next"]))


def capture_rng_state(generators: dict[str, torch.Generator | None] | None = None) -> dict:
    """Snapshot every random-number generator as tensors and plain values.

    Parameters
    ----------
    generators : dict of str to torch.Generator or None, optional
        Extra generators to save by name, e.g. a data loader's and its
        sampler's (``None`` entries are kept as ``None``).

    Returns
    -------
    dict
        ``{"torch", "cuda", "numpy", "python", "generators"}``.
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _numpy_state_to_tensors(),
        "python": _python_state_to_tensors(),
        "generators": {
            name: (None if gen is None else gen.get_state())
            for name, gen in (generators or {}).items()
        },
    }


def restore_rng_state(
    state: dict, generators: dict[str, torch.Generator | None] | None = None
) -> None:
    """Put back a snapshot from :func:`capture_rng_state`.

    Parameters
    ----------
    state : dict
        The snapshot.
    generators : dict of str to torch.Generator or None, optional
        The live generators to restore, by the names used when capturing; a
        generator whose saved state is ``None`` or missing is left alone.
    """
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    _numpy_state_from_tensors(state["numpy"])
    _python_state_from_tensors(state["python"])
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if gen is not None and saved.get(name) is not None:
            gen.set_state(saved[name])


def state_dict_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a model's state dict (a snapshot training won't change)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a kill never leaves half a file).

    Parameters
    ----------
    path : path-like
        Destination, conventionally ``<checkpoint_dir>/last.pt``.
    checkpoint : dict
        Plain data (tensors, dicts, lists, numbers, strings, None).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file: no pid in the archive
        torch.save(checkpoint, fh)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises
    ------
    modalmerge.io.InputError
        The file is missing, empty, not a torch checkpoint, or lacks ``model_config``
        and ``model_state``.
    """
    path = require_file(path, "checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling fault is a bad file
        raise InputError(path, f"not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or not {"model_config", "model_state"} <= set(checkpoint):
        raise InputError(path, "checkpoint lacks 'model_config' and 'model_state'")
    return checkpoint
