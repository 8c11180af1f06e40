"""Device and precision choice, batch transfer and autocast for training.

* :func:`resolve_device` binds this process to its GPU (``cuda:LOCAL_RANK``,
  ``torch.cuda.set_device``) and refuses to stack ranks on one GPU. A node that
  SLURM gave GPUs but whose torch cannot use them (a CPU-only wheel, no driver)
  is an error, not a silent CPU run.
* :func:`select_precision` picks the autocast dtype by the GPU's compute
  capability: bf16 where it is native (>= 8.0: A100, H100, L40, RTX 30xx+),
  fp16 with a gradient scaler on older GPUs (V100, T4), fp32 on the CPU.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from typing import Any

import torch

from modalmerge.io import DeviceError

log = logging.getLogger(__name__)

PRECISIONS = ("bf16", "fp16", "fp32")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: MODALMERGE_DEVICE=cpu forces CPU training on a node with GPUs (e.g. a test cluster).
DEVICE_ENV = "MODALMERGE_DEVICE"


def allocated_gpus() -> str:
    """The GPUs the scheduler gave this job (``CUDA_VISIBLE_DEVICES``, SLURM's GPU variables), or ""."""
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE"):
        value = os.environ.get(name, "").strip()
        if value not in ("", "-1", "NoDevFiles") and not (
            name == "SLURM_GPUS_ON_NODE" and value == "0"
        ):
            return f"{name}={value}"
    return ""


def _nvidia_device_files() -> list[str]:
    return glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/nvidiactl")


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """The training device of this process, bound as CUDA's current device.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``: the ``MODALMERGE_DEVICE`` environment variable when set, else
        ``cuda:<local_rank>`` when CUDA is usable, else the CPU. ``"cuda"`` means
        ``cuda:<local_rank>``.
    local_rank : int
        This process's index on its node (``LOCAL_RANK`` under torchrun).

    Raises
    ------
    RuntimeError
        ``local_rank`` has no GPU of its own (fewer visible GPUs than ranks), or
        the scheduler allocated GPUs on a node with NVIDIA devices that this torch
        cannot use (a CPU-only build or a broken driver).
    """
    device = str(device)
    if device == "auto":
        device = os.environ.get(DEVICE_ENV) or "auto"
    if device == "auto":
        if not torch.cuda.is_available():
            gpus = allocated_gpus()
            if gpus and _nvidia_device_files():
                build = torch.version.cuda
                raise DeviceError(
                    f"this job was given GPUs ({gpus}) but torch {torch.__version__} "
                    + ("is a CPU-only build" if build is None else f"(CUDA {build}) sees none")
                    + ": install a CUDA build of torch in the job's environment, or set "
                    f"{DEVICE_ENV}=cpu to train on the CPU on purpose"
                )
            if gpus:
                log.warning("GPUs allocated (%s) but none usable here: training on the CPU", gpus)
            return torch.device("cpu")
        device = "cuda"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        index = local_rank if resolved.index is None else resolved.index
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(
                f"local rank {local_rank} needs GPU {index} but this process sees {count} GPU(s): "
                "start one process per GPU (torchrun --nproc_per_node <= GPUs of the node)"
            )
        resolved = torch.device("cuda", index)
        torch.cuda.set_device(resolved)
    return resolved


def select_precision(device: torch.device, amp: str | bool = "auto") -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"``: the autocast precision of training on ``device``.

    ``amp="auto"`` (or True): bf16 on GPUs that compute it natively (compute
    capability >= 8.0), fp16 (with a GradScaler) on older GPUs, fp32 on the CPU.
    ``"bf16"``/``"fp16"`` ask for one (bf16 on a GPU without native bf16 falls
    back to fp16, with a warning); ``"off"`` (or False): fp32.
    """
    if amp in ("off", False, "fp32"):
        return "fp32"
    if amp not in ("auto", True, "bf16", "fp16"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            log.warning("%s autocast is used on CUDA only; training in fp32", amp)
        return "fp32"
    native_bf16 = torch.cuda.get_device_capability(device) >= (8, 0)
    if amp == "fp16":
        return "fp16"
    if amp == "bf16" and not native_bf16:
        log.warning("bf16 is not native on %s (sm < 8.0): using fp16", device)
    return "bf16" if native_bf16 else "fp16"


def move_to_device(value: Any, device: torch.device) -> Any:
    """Move tensors, also inside dicts, lists and tuples, to ``device`` (non-blocking)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: move_to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(move_to_device(v, device) for v in value)
    return value


def autocast(device: torch.device, precision: str | bool):
    """Autocast to ``precision`` (``"bf16"``/``"fp16"``) on CUDA; a no-op context otherwise.

    ``True`` means bf16 (the former signature).
    """
    precision = "bf16" if precision is True else precision
    if device.type == "cuda" and precision in _AMP_DTYPES:
        return torch.autocast("cuda", dtype=_AMP_DTYPES[precision])
    return contextlib.nullcontext()
