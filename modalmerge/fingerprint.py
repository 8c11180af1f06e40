"""Fingerprints of the package code a workflow stage runs.

Snakemake's ``code`` rerun trigger sees only a rule's own code, not the package
functions the rule calls. Each rule therefore carries, in its ``params``, a
fingerprint of the source of its stage module and of every ``modalmerge``
module that module imports, followed transitively by static analysis (no
import is executed, so fingerprinting is fast and needs no torch).

Editing one stage's code then reruns that stage and the stages that consume its
outputs, and nothing else.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PACKAGE = PACKAGE_ROOT.name


def module_path(module: str) -> Path:
    """Return the source file of a ``modalmerge`` module (``a.b`` → ``a/b.py`` or ``a/b/__init__.py``)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        raise ValueError(f"{module!r} is not a module of the {PACKAGE} package")
    parts = module.split(".")[1:]
    base = PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"module {module!r} has no source file under {PACKAGE_ROOT}")


def _imported_modules(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    resolved = set()
    for name in found:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            try:
                module_path(name)
            except ValueError:  # `from pkg import function`: not a module
                continue
            resolved.add(name)
    return resolved


@cache
def module_closure(module: str) -> tuple[str, ...]:
    """All ``modalmerge`` modules ``module`` depends on, itself included, sorted."""
    seen: set[str] = set()
    stack = [module]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(_imported_modules(module_path(name), name) - seen)
    return tuple(sorted(seen))


def code_fingerprint(*modules: str) -> str:
    """SHA-256 (first 16 hex digits) of the sources of ``modules`` and everything they import."""
    names = sorted({m for module in modules for m in module_closure(module)})
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(module_path(name).read_bytes())
    return digest.hexdigest()[:16]
