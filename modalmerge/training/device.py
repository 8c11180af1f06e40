"""Device choice, batch transfer and autocast for training."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """``"auto"`` gives CUDA (this process's GPU under torchrun) when present, else CPU."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)


def move_to_device(value: Any, device: torch.device) -> Any:
    """Move tensors, also inside dicts, lists and tuples, to ``device`` (non-blocking)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: move_to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(move_to_device(v, device) for v in value)
    return value


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; a no-op context otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
