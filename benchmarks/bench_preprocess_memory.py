"""Peak memory (RSS) and disk per subject of the data stages, at the default size and at HCP size.

Each stage runs as the workflow runs it, as one ``modalmerge`` command in a child process;
its peak RSS is the child's own (``os.wait4``: ``ru_maxrss``), its disk the size of the
files it wrote.

- ``--size default``: one subject of the default synthetic cohort (36 x 44 x 36 x 150 at
  4 mm): acquire (atlas, then the subject), preprocess, parcellate.
- ``--size hcp``: a generated run of 91 x 109 x 91 x ``--n-volumes`` (1200: an HCP run) on
  the 2 mm MNI grid, int16 in a .nii.gz written volume chunk by volume chunk (the generator
  never holds the run either), a 3D T1 and a 2 mm label atlas with ``--n-regions`` blocks
  inside a brain-sized ellipsoid (on the run's grid: no resampling); preprocess, parcellate.
  Several GB under ``--work``, deleted at the end unless ``--keep``.

``--pythonpath DIR`` runs the stages from another checkout (e.g. the commit before chunking,
``git worktree add /tmp/mm-before dccc043``) with this checkout's virtual environment.

Usage: .venv/bin/python benchmarks/bench_preprocess_memory.py --size default
       .venv/bin/python benchmarks/bench_preprocess_memory.py --size hcp [--n-volumes 1200]
           [--parcellate-before /tmp/mm-before]   (parcellate from that checkout too, compared)
       .venv/bin/python benchmarks/bench_preprocess_memory.py --size hcp --parcellate-only
           --n-volumes 300 --parcellate-before /tmp/mm-before
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from modalmerge.data.nifti import _gzip

STAGES = ("acquire", "preprocess", "parcellate")


def child_env(pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")])
    return env


def package_used(pythonpath: str | None, cwd: Path) -> str:
    """The modalmerge package a child imports (``python -m`` puts its working directory first
    on sys.path, so children run in ``cwd``, outside any checkout)."""
    code = "import modalmerge; print(modalmerge.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env=child_env(pythonpath), cwd=cwd,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def measure(args: list[str], pythonpath: str | None, cwd: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of ``python -m modalmerge.cli ARGS`` in a child."""
    env = child_env(pythonpath)
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "modalmerge.cli", *args], env=env, cwd=cwd)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"modalmerge {args[0]} failed ({child.returncode})")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def disk_mb(paths) -> float:
    return sum(Path(p).stat().st_size for p in paths if Path(p).is_file()) / 1e6


def write_hcp_like(folder: Path, n_volumes: int, n_regions: int, seed: int = 0) -> dict:
    """T1, atlas (+ labels.tsv) and an int16 BOLD run on the 2 mm MNI grid, streamed to disk."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = (91, 109, 91)
    affine = np.array([[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]], float)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = ((grid / np.array([0.78, 0.82, 0.74])[:, None, None, None]) ** 2).sum(0) < 1
    centres = np.argwhere(inside)[rng.choice(inside.sum(), n_regions, replace=False)]
    labels = np.zeros(shape, np.int16)
    ijk = np.argwhere(inside)
    nearest = np.empty(len(ijk), np.int64)
    for s in range(0, len(ijk), 20000):  # nearest centre: compact blocks as regions
        d = ((ijk[s : s + 20000, None, :] - centres[None]) ** 2).sum(-1)
        nearest[s : s + 20000] = d.argmin(1)
    labels[tuple(ijk.T)] = nearest + 1
    paths = {k: folder / f"{k}.nii.gz" for k in ("atlas", "t1", "bold")}
    nib.save(nib.Nifti1Image(labels, affine), paths["atlas"])
    rows = ["index\tname\tx\ty\tz"]
    for k, c in enumerate(centres @ affine[:3, :3].T + affine[:3, 3], start=1):
        rows.append(f"{k}\tregion{k}\t{c[0]:.1f}\t{c[1]:.1f}\t{c[2]:.1f}")
    paths["labels"] = folder / "labels.tsv"
    paths["labels"].write_text("\n".join(rows) + "\n")
    head = np.where(inside, 1000.0, 50.0).astype(np.float32)
    nib.save(
        nib.Nifti1Image(head + rng.normal(0, 20, shape).astype(np.float32), affine), paths["t1"]
    )
    header = nib.Nifti1Image(np.zeros((1, 1, 1, 1), np.int16), affine).header
    header.set_data_shape((*shape, n_volumes))
    header.set_xyzt_units("mm", "sec")
    header.set_zooms((2.0, 2.0, 2.0, 0.72))  # HCP's TR
    header.set_data_offset(352)
    header.set_slope_inter(1.0, 0.0)
    t = np.arange(n_volumes) * 0.72
    phases = rng.uniform(0, 2 * np.pi, n_regions + 1)
    with _gzip.open(paths["bold"], "wb", compresslevel=1) as fh:
        header.write_to(fh)
        fh.write(b"\x00" * (352 - fh.tell()))
        for t0 in range(0, n_volumes, 50):
            tt = t[t0 : t0 + 50]
            signal = np.sin(2 * np.pi * 0.05 * tt[None, :] + phases[:, None])  # (R + 1, t)
            block = head[..., None] + 20 * signal[labels] + rng.normal(0, 10, (*shape, len(tt)))
            fh.write(np.asfortranarray(np.rint(block).astype(np.int16)).ravel(order="F").data)
    (folder / "bold.json").write_text(json.dumps({"RepetitionTime": 0.72}))
    return paths


def stage_commands(size: str, work: Path, args) -> list[tuple[str, list[str], list[Path]]]:
    """(stage, modalmerge arguments, files it writes) in workflow order."""
    pre = work / "preproc"
    out = {"t1": pre / "t1.nii.gz", "bold": pre / "bold.nii.gz", "npz": work / "parc.npz"}
    commands = []
    if size == "default":
        from modalmerge.stages.acquire import source_atlas_dataset, source_subject_params

        dataset = {"name": "bench", "kind": "synthetic", "params": {"n_subjects": 64}}
        root = work / "results"
        commands.append(("acquire", ["acquire-cohort", "--part", "atlas", "--dataset",
                                     json.dumps(source_atlas_dataset(dataset)), "--root", str(root)],
                         [root / "atlas"]))  # fmt: skip
        subject = json.dumps(source_subject_params(dataset, "sub-001"))
        raw = root / "raw" / "sub-001"
        truth = [root / "truth" / "sub-001.npz", root / "truth" / "sub-001_bold-noisefree.nii.gz"]
        commands.append(("acquire", ["acquire-subject", "--dataset", subject, "--root", str(root),
                                     "--subject", "sub-001"], [raw, *truth]))  # fmt: skip
        inputs = {"atlas": root / "atlas" / "atlas.nii.gz", "labels": root / "atlas" / "labels.tsv",
                  "t1": raw / "anat" / "sub-001_T1w.nii.gz",
                  "bold": next(iter(sorted((raw / "func").glob("*_bold.nii.gz"))), None)}  # fmt: skip
    else:
        inputs = write_hcp_like(work / "raw", args.n_volumes, args.n_regions)
    inputs["bold"] = inputs["bold"] or "LATER"
    chunk = ["--chunk-mb", str(args.chunk_mb)] if args.chunk_mb else []
    commands.append(("preprocess", ["preprocess", "--settings", "{}", "--t1", str(inputs["t1"]),
                                    "--atlas", str(inputs["atlas"]), "--bold", "BOLD",
                                    "--out-bold", str(out["bold"]), "--out-t1", str(out["t1"]),
                                    *chunk], [pre]))  # fmt: skip
    commands.append(("parcellate", ["parcellate", "--settings", "{}", "--t1", str(out["t1"]),
                                    "--bold", str(out["bold"]), "--atlas", str(inputs["atlas"]),
                                    "--labels", str(inputs["labels"]), "--out", str(out["npz"])],
                     [out["npz"]]))  # fmt: skip
    return commands, inputs


def parcellate_before(argv: list[str], checkout: str, work: Path) -> tuple:
    """The same parcellate command from another checkout (the code before a change), on the
    same cleaned run: its row, and whether its ``.npz`` arrays equal this checkout's."""
    out = argv[argv.index("--out") + 1]
    before = str(Path(out).with_name("parc-before.npz"))
    argv = [before if a == out else a for a in argv]
    rss, wall = measure(argv, checkout, work)
    with np.load(out) as a, np.load(before) as b:
        same = set(a.files) == set(b.files) and all(
            a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a.files
        )
    name = f"parcellate, code of {checkout} ({'same' if same else 'DIFFERENT'} .npz)"
    print(f"{name:34s} peak RSS {rss:8.0f} MB  {wall:7.1f} s", flush=True)
    return name, rss, wall, disk_mb([before])


def parcellate_only(args) -> None:
    """``--parcellate-only``: parcellate (this checkout, and ``--parcellate-before``'s) of the
    generated HCP-size run itself (on the atlas grid: no preprocess needed to measure reading
    it), the run written by a child process so that this process stays small: a child's
    ``ru_maxrss`` starts at its parent's RSS when it forks, so measuring children from a
    process that generated the run (~1.1 GB) reads that floor, not the child's peak."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from bench_preprocess_memory import "
        "write_hcp_like; from pathlib import Path; "
        "write_hcp_like(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))"
    )
    here, raw = str(Path(__file__).parent), args.work / "raw"
    subprocess.run([sys.executable, "-c", code, here, str(raw), str(args.n_volumes),
                    str(args.n_regions)], check=True)  # fmt: skip
    argv = ["parcellate", "--settings", "{}", "--t1", str(raw / "t1.nii.gz"), "--bold",
            str(raw / "bold.nii.gz"), "--atlas", str(raw / "atlas.nii.gz"), "--labels",
            str(raw / "labels.tsv"), "--out", str(args.work / "parc.npz")]  # fmt: skip
    floor, _ = measure(["--help"], None, args.work)
    print(f"{'modalmerge --help (floor)':34s} peak RSS {floor:8.0f} MB", flush=True)
    rss, wall = measure(argv, None, args.work)
    print(f"{'parcellate (this checkout)':34s} peak RSS {rss:8.0f} MB  {wall:7.1f} s", flush=True)
    if args.parcellate_before:
        parcellate_before(argv, args.parcellate_before, args.work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=("default", "hcp"), default="default")
    parser.add_argument("--n-volumes", type=int, default=1200)
    parser.add_argument("--n-regions", type=int, default=100)
    parser.add_argument("--chunk-mb", type=int, default=None, help="default: the setting's")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_preprocess_memory"))
    parser.add_argument("--pythonpath", default=None, help="a checkout to run the stages from")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-parcellate", action="store_true", help="stop after preprocess")
    parser.add_argument(
        "--parcellate-before",
        default=None,
        help="also run parcellate from this checkout on the same cleaned run, compare the .npz",
    )
    parser.add_argument(
        "--parcellate-only", action="store_true", help="--size hcp: parcellate the raw run only"
    )
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    if args.parcellate_only:
        try:
            parcellate_only(args)
        finally:
            if not args.keep:
                shutil.rmtree(args.work, ignore_errors=True)
        return
    rows = []
    print(f"modalmerge from {package_used(args.pythonpath, args.work)}", flush=True)
    try:
        commands, inputs = stage_commands(args.size, args.work, args)
        if args.size == "hcp":
            written = [inputs[k] for k in ("bold", "t1", "atlas", "labels")]
            rows.append(("acquire (generated)", float("nan"), float("nan"), disk_mb(written)))
        for stage, argv, outputs in commands:
            if stage == "parcellate" and args.no_parcellate:
                break
            if stage == "preprocess":
                if args.chunk_mb and args.pythonpath:  # an older checkout has no --chunk-mb
                    raise SystemExit("--chunk-mb and --pythonpath do not go together")
                bold = inputs["bold"]
                if bold == "LATER":
                    bold = next(iter(sorted(args.work.rglob("raw/sub-001/func/*_bold.nii.gz"))))
                argv = [str(bold) if a == "BOLD" else a for a in argv]
            rss, wall = measure(argv, args.pythonpath, args.work)
            files = [f for p in outputs for f in (Path(p).rglob("*") if Path(p).is_dir() else [p])]
            rows.append((f"{stage} ({argv[0]})", rss, wall, disk_mb(files)))
            print(f"{rows[-1][0]:34s} peak RSS {rss:8.0f} MB  {wall:7.1f} s  disk {rows[-1][3]:8.2f} MB",
                  flush=True)  # fmt: skip
            if stage == "parcellate" and args.parcellate_before:
                rows.append(parcellate_before(argv, args.parcellate_before, args.work))
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    print("\n| stage | peak RSS (MB) | wall (s) | disk written (MB) |\n|---|---|---|---|")
    for name, rss, wall, disk in rows:
        print(f"| {name} | {rss:.0f} | {wall:.1f} | {disk:.2f} |")


if __name__ == "__main__":
    main()
