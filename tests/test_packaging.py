"""Packaging and workflow hygiene: declared dependencies match the code's imports, the
speed-ups are optional, the version has one source, and the tiny aggregation rules of the
workflow are local (never submitted to a cluster)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]

#: The rules that run inside the Snakemake process (Snakefile's `localrules:`).
LOCAL_RULES = {"all", "environment", "site_summary", "summarize", "summary_chart"}


def _name(requirement: str) -> str:
    """Normalised distribution name of a requirement string (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _declared(*groups: str) -> set[str]:
    names = {_name(r) for r in PROJECT["dependencies"]} if "core" in groups else set()
    for group in groups:
        if group != "core":
            names |= {_name(r) for r in EXTRAS[group] if not r.startswith("modalmerge")}
    return names


def _top_level_modules(root: Path) -> set[str]:
    """Top-level names of every absolute import, and of every ``find_spec("name")`` probe."""
    return set().union(*(_top_level_modules_of(path) for path in root.rglob("*.py")))


def _top_level_modules_of(path: Path) -> set[str]:
    """Top-level names of one file's absolute imports and ``find_spec("name")`` probes."""
    names = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "find_spec"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"modalmerge", "__future__"}


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    """Installed distribution names (normalised) that provide each module."""
    providers = importlib.metadata.packages_distributions()
    return {m: {_name(d) for d in providers.get(m, [])} for m in sorted(modules)}


def test_every_third_party_import_of_the_package_is_declared():
    declared = _declared("core", *EXTRAS)
    missing = {
        module: dists
        for module, dists in _distributions(_top_level_modules(REPO / "modalmerge")).items()
        if not dists & declared
    }
    assert not missing, (
        f"imported by modalmerge/ but not declared in pyproject.toml: {missing} "
        "(module -> installed distributions; empty: not installed at all)"
    )


def test_every_declared_dependency_is_used():
    package = set().union(*_distributions(_top_level_modules(REPO / "modalmerge")).values())
    tests = set().union(*_distributions(_top_level_modules(REPO / "tests")).values())
    unused_core = _declared("core") - package
    assert not unused_core, f"declared but never imported by modalmerge/: {unused_core}"
    # the optional runtime extras are probed or imported by the package or read by the tests
    unused_optional = _declared("fast", "real") - package - tests
    assert not unused_optional, f"extras nothing imports or probes: {unused_optional}"
    # pyyaml in dev: the tests read configs with it; in the package only the schema generator
    # (modalmerge.settings_schema, the developer tool behind `make schema`) imports it
    assert "pyyaml" in tests
    users = [
        p.relative_to(REPO).as_posix()
        for p in (REPO / "modalmerge").rglob("*.py")
        if "yaml" in _top_level_modules_of(p)
    ]
    assert users == ["modalmerge/settings_schema.py"]
    assert "pyyaml" in _declared("dev") and "pyyaml" not in _declared("core")


def test_the_package_runs_without_the_speed_ups():
    """numba and isal (the `fast` extra) are optional: hide them and use what they speed up."""
    code = textwrap.dedent(
        """
        import gzip, sys, tempfile
        from pathlib import Path
        sys.modules["numba"] = None  # `import numba` raises ImportError, find_spec gives None
        sys.modules["isal"] = None
        import nibabel as nib
        import numpy as np
        import modalmerge
        from modalmerge.data import nifti
        from modalmerge.data.parcellation import parcellate, roi_kernel

        assert nifti._gzip is gzip, nifti._gzip
        assert roi_kernel.HAVE_NUMBA is False
        roi_kernel.MIN_ELEMENTS = 0  # numba's size threshold: not what decides here

        rng = np.random.default_rng(0)
        data = rng.standard_normal((5, 4, 3, 7)).astype(np.float32)
        labels = rng.integers(0, 4, size=(5, 4, 3))
        path = Path(tempfile.mkdtemp()) / "bold.nii.gz"
        nifti.save_image(nib.Nifti1Image(data, np.eye(4)), path)
        with gzip.open(path) as fh:  # a standard gzip stream
            assert len(fh.read()) > data.nbytes
        back = np.asanyarray(nifti.load_image(path, ndim=4).dataobj)
        np.testing.assert_array_equal(back, data)
        means = parcellate.roi_means(back, labels)
        expected = np.stack([back[labels == r].mean(axis=0) for r in (1, 2, 3)], axis=1)
        np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-6)
        assert sys.modules["numba"] is None and sys.modules["isal"] is None
        print("ok", modalmerge.__version__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok ")


def test_the_real_extra_needs_nothing_but_core_dependencies_and_vtk():
    """`make setup` installs the `real` extra with --no-deps (brainspace's vtk is 640 MB):
    that is safe only while their other requirements are core dependencies."""
    core = _declared("core")
    for requirement in EXTRAS["real"]:
        dist = _name(requirement)
        try:
            requires = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{dist} is not installed (make setup installs it)")
        needed = {_name(r) for r in requires if "extra" not in r.partition(";")[2]}
        needed -= {"vtk"}
        assert needed <= core, f"{dist} needs {needed - core}, not core dependencies"


def test_the_version_has_one_source():
    import modalmerge

    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "modalmerge._version.__version__"
    assert importlib.metadata.version("modalmerge") == modalmerge.__version__


def test_python_floor_tools_and_setup_agree():
    assert PROJECT["requires-python"] == ">=3.11"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
    line_length = PYPROJECT["tool"]["ruff"]["line-length"]
    assert PYPROJECT["tool"]["snakefmt"]["line_length"] == line_length
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    # make setup installs every extra: real through REAL_EXTRA (--no-deps), the rest by name
    makefile = (REPO / "Makefile").read_text()
    installed = re.search(r'pip install -q -e "\.\[([a-z,]+)\]"', makefile).group(1).split(",")
    assert set(installed) | {"real"} == set(EXTRAS)
    assert "['optional-dependencies']['real']" in makefile
    assert "snakefmt --check" in makefile


WORKFLOW_PROBE = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow_api = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
        snakefile=Path("Snakefile"),
        workdir=Path(sys.argv[2]),
    )
    workflow_api.list_rules()  # parses the Snakefile and its includes
    workflow = workflow_api._workflow
    # Snakemake's own decision, as under a cluster executor (local_exec False there)
    type(workflow).local_exec = property(lambda self: False)
    print(json.dumps({
        rule.name: {"local": workflow.is_local(rule), "conda": rule.conda_env}
        for rule in workflow.rules
    }))
"""


@pytest.mark.parametrize("configfile", ["configs/tiny.yaml", "configs/real_group.yaml"])
def test_only_the_tiny_aggregation_rules_are_local(configfile, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", WORKFLOW_PROBE, str(REPO / configfile), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rules = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"acquire_cohort", "shard", "train", "evaluate", "figures"} <= rules.keys()
    local = {name for name, rule in rules.items() if rule["local"]}
    # the subject DAG adds shard_inputs (writes the shard job's file lists: one JSON file)
    assert local == LOCAL_RULES | ({"shard_inputs"} if "preprocess" in rules else set())
    # no rule asks for a conda environment: every job runs in the project's environment
    assert all(rule["conda"] is None for rule in rules.values())
    # a grouped rule is never local: the SLURM profile must not group the local rules
    profile = (REPO / "workflow/profiles/slurm/config.yaml").read_text()
    groups = re.search(r"^groups:\n((?:  .*\n)+)", profile, re.M).group(1)
    assert not (LOCAL_RULES | {"shard_inputs"}) & set(re.findall(r"^  (\w+):", groups, re.M))


def test_no_conda_environment_is_offered():
    assert not (REPO / "envs").exists()
    for path in [*REPO.glob("workflow/rules/*.smk"), REPO / "Snakefile"]:
        assert not re.search(r"^\s*conda:", path.read_text(), re.M), path
    for path in [REPO / "README.md", *REPO.glob("docs/*.md")]:
        assert "envs/modalmerge.yaml" not in path.read_text(), path
