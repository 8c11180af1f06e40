"""Small I/O helpers shared by every stage: atomic writes and clear input errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class DeviceError(RuntimeError):
    """The job's devices cannot serve it (a GPU job on a CPU-only torch, too few GPUs):
    the command line reports it as one line, like bad input."""


class InputError(ValueError):
    """Bad input to a stage: the message names the file and the fault."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _tmp_name(path: Path) -> Path:
    # keep the suffixes so libraries that dispatch on them (nibabel, np.savez) still work
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it
    was, so a killed or failing stage never leaves a half-written output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{path}: nothing was written")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it in for ``path`` on success.

    On failure the temporary directory is removed and ``path`` is untouched: a
    directory output (shards, a subject's ``raw/`` folder, an atlas) is either
    the old one or the complete new one.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = path.with_name(f".old-{os.getpid()}-{path.name}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`), unless the file already
    holds exactly ``text``: then it is left alone, its mtime too, so Snakemake sees no
    update and reruns nothing downstream (a plan or a description every job writes alike).

    Returns
    -------
    bool
        True when the file was (re)written, False when it already held ``text``.
    """
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):  # absent or not text: (re)written
        pass
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


def require_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """Return ``path`` as a Path, or raise InputError when it is missing or empty."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} is missing")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(path, f"{what} is empty")
    return path


def load_arrays(path: str | os.PathLike, what: str = "predictions") -> dict:
    """Every array of an ``.npz`` file (``predictions.npz``) as a dict, read at once.

    Raises InputError naming ``path`` when it is missing, empty or not a readable
    ``.npz`` archive (pickled objects are refused).
    """
    import numpy as np

    require_file(path, what)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"not a readable {what} file ({exc})") from exc
