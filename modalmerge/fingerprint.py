"""Fingerprints of the package code a workflow stage runs.

Snakemake's ``code`` rerun trigger sees only a rule's own code, not the package
functions the rule calls. Each rule therefore carries, in its ``params``, a
fingerprint of its stage module and of every ``modalmerge`` module that module
imports, followed transitively by static analysis (no import is executed, so
fingerprinting is fast and needs no torch).

What enters a fingerprint, and what does not:

- each module's *syntax*, with docstrings removed (comments, blank lines and
  formatting are not in the syntax tree): editing a comment or a docstring
  reruns nothing, changing behaviour reruns the stage and what follows;
- nor the ``doc="..."`` string of a call (the settings fields' ``F(default,
  doc=...)`` in ``settings.py``): it reaches the config schema's descriptions
  only, and every stage imports the settings, so editing one used to rerun the
  whole workflow;
- imports inside a module's ``__getattr__`` (lazy re-exports) and inside
  ``if TYPE_CHECKING:`` blocks are not followed: they run no code at stage time;
- ``modalmerge/cli.py``, the entry point every rule calls, in every fingerprint;
- the installed version of every third-party distribution the modules import
  (nilearn, nibabel, numpy, torch, ...; ``absent`` for an optional one that is
  not installed), so an upgrade, or installing a speed-up, reruns the stages
  whose code imports it.

Remembered between processes. Parsing and walking the ~100 modules took about half
of a no-op Snakemake run's time (every Snakemake start, and every cluster job,
parses the Snakefile). Each fingerprint, and the third-party imports of each stage,
are kept in a small JSON file (``$MODALMERGE_FINGERPRINT_CACHE``, else
``$XDG_CACHE_HOME/modalmerge/fingerprints.json``, else ``~/.cache/...``; an empty
value turns it off) under a digest of every ``.py`` file of the package and the
Python version: any edit of the package's source misses the cache and is parsed
again; installed versions are read live and are part of each fingerprint's key.
A cache that cannot be read or written is ignored (a fingerprint is recomputed).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

from modalmerge.io import atomic_path

PACKAGE_ROOT = Path(__file__).resolve().parent
PACKAGE = PACKAGE_ROOT.name
ENTRY_POINT = f"{PACKAGE}.cli"
#: environment variable naming the cache file ("" turns the cache off)
CACHE_ENV = "MODALMERGE_FINGERPRINT_CACHE"
#: package digests a cache file keeps (the newest): several checkouts (worktrees) share a home
CACHE_ENTRIES = 32
_CACHE_FORMAT = 3  # bumped whenever what is cached, or how fingerprints are made, changes


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


@cache
def _tree(path: Path) -> ast.Module:
    """The module's syntax tree with its docstrings and the string literals of ``doc=``
    keywords removed (comments never enter it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            node.keywords = [kw for kw in node.keywords if not _is_doc_keyword(kw)]
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _is_doc_keyword(keyword: ast.keyword) -> bool:
    """``doc="..."`` with a string literal (an f-string or a name is code: it stays)."""
    value = keyword.value
    return keyword.arg == "doc" and isinstance(value, ast.Constant) and isinstance(value.value, str)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(tree: ast.AST):
    """Import statements that run code at stage time (lazy ``__getattr__`` and
    ``TYPE_CHECKING`` imports are skipped)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "__getattr__":
            continue
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


@cache  # per process: a Snakefile parse asks for each module once per stage that imports it
def _imported_names(path: Path, module: str) -> frozenset[str]:
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(_tree(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif node.level:  # relative import
            anchor = module.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        else:
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def _package_modules(names: set[str]) -> set[str]:
    resolved = set()
    for name in names:
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
        if name == ENTRY_POINT and name != module:
            # the command line imports every stage (lazily): a module that imports it (the
            # preprocess + parcellate batch job's runner) depends on its own source only, as
            # every fingerprint does, not on every stage's code
            continue
        path = module_path(name)
        stack.extend(_package_modules(_imported_names(path, name)) - seen)
    return tuple(sorted(seen))


@cache
def third_party_imports(module: str) -> tuple[str, ...]:
    """Top-level names of the non-stdlib, non-``modalmerge`` modules the closure imports."""
    tops = set()
    for name in module_closure(module):
        for imported in _imported_names(module_path(name), name):
            top = imported.split(".")[0]
            if top and top != PACKAGE and top not in sys.stdlib_module_names:
                tops.add(top)
    return tuple(sorted(tops))


#: Import names whose distribution is named otherwise (``importlib.metadata.packages_distributions``
#: would find them too, but scans every installed distribution: ~0.5 s per Snakemake start).
DISTRIBUTION_NAMES = {"sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "pyyaml"}


@cache  # per process: each stage's fingerprint asks again for numpy, nibabel, ...
def _distribution_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def dependency_versions(module: str) -> dict[str, str]:
    """``{distribution: version}`` of what ``module``'s closure imports (``absent`` if not installed)."""
    versions = {}
    for top in _remembered_third_party(module):
        dist = DISTRIBUTION_NAMES.get(top, top)
        versions[dist] = _distribution_version(dist)
    return dict(sorted(versions.items()))


@cache
def normalised_source(module: str) -> str:
    """The module's syntax without docstrings and source positions."""
    return ast.dump(_tree(module_path(module)), annotate_fields=False, include_attributes=False)


def clear_caches() -> None:
    """Forget every per-process cache (tests that fake a file or an installed version);
    the cache file stays (it is keyed by the source, and fingerprints by the versions)."""
    for cached in (_tree, _imported_names, module_closure, third_party_imports,
                   _distribution_version, normalised_source, code_fingerprint,
                   package_digest, _disk_entry):  # fmt: skip
        cached.cache_clear()


def cache_path() -> Path | None:
    """The cache file (module docstring), or None when ``$MODALMERGE_FINGERPRINT_CACHE`` is ""."""
    if CACHE_ENV in os.environ:
        return Path(os.environ[CACHE_ENV]) if os.environ[CACHE_ENV] else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / PACKAGE / "fingerprints.json"


@cache
def package_digest() -> str:
    """SHA-256 of every ``.py`` file of the package (relative path and bytes) and the Python
    version (``ast.dump`` may differ between versions): the key of the cache file's entry.
    Reading and hashing the files takes milliseconds; parsing them, about a second."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT} {sys.version_info[:2]}".encode())
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read_cache(path: Path) -> dict:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, unreadable or half-written by hand: start afresh
        return {}
    return stored if isinstance(stored, dict) else {}


@cache
def _disk_entry() -> dict:
    """This source's entry of the cache file: ``{"third_party": {module: [names]},
    "fingerprints": {key: fingerprint}}`` (empty when there is none)."""
    path = cache_path()
    entry = _read_cache(path).get(package_digest()) if path is not None else None
    if not (isinstance(entry, dict) and {"third_party", "fingerprints"} <= set(entry)):
        entry = {"third_party": {}, "fingerprints": {}}
    return entry


def _remember(section: str, key: str, value) -> None:
    """Store ``value`` in this source's entry and write the cache file (atomically; the
    newest :data:`CACHE_ENTRIES` entries kept). A file that cannot be written is ignored."""
    entry = _disk_entry()
    entry[section][key] = value
    path = cache_path()
    if path is None:
        return
    stored = _read_cache(path)
    stored.pop(package_digest(), None)
    stored[package_digest()] = entry  # last: the newest
    for old in list(stored)[:-CACHE_ENTRIES]:
        del stored[old]
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(stored, sort_keys=False))
    except OSError:
        pass


def _remembered_third_party(module: str) -> tuple[str, ...]:
    """:func:`third_party_imports`, from the cache file when this source was seen before."""
    known = _disk_entry()["third_party"]
    if module in known:
        return tuple(known[module])
    found = third_party_imports(module)
    _remember("third_party", module, list(found))
    return found


@cache
def code_fingerprint(*modules: str) -> str:
    """SHA-256 (first 16 hex digits) of what a stage running ``modules`` depends on.

    The syntax of ``modules``, of every package module they import and of the
    command-line entry point (its own source only: it imports every stage
    lazily), plus the versions of the third-party distributions ``modules``
    and their closure import. Remembered in the cache file under the modules and
    those versions (module docstring).
    """
    versions: dict[str, str] = {}
    for module in modules:  # not the entry point's: it imports every stage, lazily
        versions.update(dependency_versions(module))
    key = json.dumps([list(modules), sorted(versions.items())])
    known = _disk_entry()["fingerprints"]
    if key in known:
        return known[key]
    fingerprint = _compute_fingerprint(modules, versions)
    _remember("fingerprints", key, fingerprint)
    return fingerprint


def _compute_fingerprint(modules: tuple[str, ...], versions: dict[str, str]) -> str:
    names = sorted({m for module in modules for m in module_closure(module)} | {ENTRY_POINT})
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(normalised_source(name).encode())
    for dist, version in sorted(versions.items()):
        digest.update(f"{dist}=={version}".encode())
    return digest.hexdigest()[:16]
