"""The environment lock every workflow run writes (results/<name>/environment.txt)."""

from __future__ import annotations

import subprocess
from importlib import metadata

from modalmerge.stages.environment import environment_lock, write_environment


def test_lock_lists_python_torch_nilearn_and_the_commit(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.txt").write_text("a\n")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = tmp_path / "results" / "demo" / "environment.txt"
    write_environment(out, repo)
    lines = out.read_text().splitlines()
    assert f"git commit: {head.strip()}" in lines
    for package in ("torch", "nilearn", "numpy", "snakemake"):
        assert f"{package}=={metadata.version(package)}" in lines, package
    assert any(line.startswith("python: 3.") for line in lines)
    assert f"torch: {metadata.version('torch')}" in " ".join(lines) or any(
        line.startswith("torch: ") for line in lines
    )
    assert any(line.startswith("CUDA available: ") for line in lines)
    (repo / "f.txt").write_text("b\n")  # an uncommitted change is flagged
    assert f"git commit: {head.strip()}-dirty" in environment_lock(repo).splitlines()


def test_lock_outside_a_checkout_says_so(tmp_path):
    assert "git commit: unknown" in environment_lock(tmp_path)


def test_the_header_read_of_each_distribution_agrees_with_importlib_s_parser():
    """distributions() reads Name and Version from the metadata header only (fast at every
    Snakemake start); for every installed distribution that is what the email parser gives."""
    from modalmerge.stages.environment import _name_version, distributions

    dists = list(metadata.distributions())
    assert len(dists) > 50  # the project's environment, not an empty path
    for dist in dists:
        assert _name_version(dist) == (dist.metadata["Name"], dist.version), dist._path
    assert "numpy==" + metadata.version("numpy") in distributions()
