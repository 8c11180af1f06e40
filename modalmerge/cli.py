"""The ``modalmerge`` command line: one subcommand per workflow stage, plus a demo.

Each subcommand parses explicit paths and a JSON config section, calls one
package function and turns bad input into a one-line error (exit status 1)
that names the file and the problem, instead of a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from modalmerge import settings as typed

log = logging.getLogger("modalmerge")


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _section(name: str) -> Callable[[str], object]:
    """An argparse type: JSON text -> the typed settings of config section ``name``
    (defaults filled; a bad key is an error naming it, e.g. ``preprocess.high_pass``)."""

    def parse(text: str):
        try:
            return typed.from_dict(name, _json(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f"{name} settings"
    return parse


def _acquire_cohort(a: argparse.Namespace) -> None:
    from modalmerge.stages.acquire import acquire_cohort

    acquire_cohort(a.dataset, a.root, parts=tuple(a.part or ("table", "atlas")))


def _acquire_subject(a: argparse.Namespace) -> None:
    from modalmerge.stages.acquire import acquire_subject

    acquire_subject(a.dataset, a.subject, a.root)


def _preprocess(a: argparse.Namespace) -> None:
    from modalmerge.data.preprocess import preprocess_subject

    settings = a.settings  # --chunk-mb: a resource knob, outside the settings' identity JSON
    if a.chunk_mb is not None:
        settings = dataclasses.replace(settings, chunk_mb=a.chunk_mb)
    preprocess_subject(
        a.t1,
        a.bold,
        a.atlas,
        a.out_t1,
        a.out_bold,
        settings,
        confounds_path=a.confounds,
        extra_anatomy=[tuple(x) for x in a.extra],
        label_anatomy=a.label,
        time_split=a.time_split,
    )


def _parcellate(a: argparse.Namespace) -> None:
    from modalmerge.data.parcellation.parcellate import parcellate_subject

    parcellate_subject(
        a.t1, a.bold, a.atlas, a.labels, a.out, a.settings,
        a.out_timeseries, a.out_relmat, a.out_features,
        **({} if a.chunk_mb is None else {"chunk_mb": a.chunk_mb}),
    )  # fmt: skip


#: What ``shard --inputs-json`` reads: the file lists that would not fit on a command line.
SHARD_INPUT_KEYS = ("subjects", "parcellated", "anatomy", "texts", "participants", "channels",
                    "extra_anatomy", "label_channels", "point_clouds",
                    "bold", "events")  # fmt: skip


def _shard(a: argparse.Namespace) -> None:
    from modalmerge.data.shards.subjects import write_shards

    if a.inputs_json:  # the workflow's form: thousands of subjects exceed ARG_MAX otherwise
        spec = json.loads(Path(a.inputs_json).read_text())
        unknown = sorted(set(spec) - set(SHARD_INPUT_KEYS))
        if unknown:
            raise ValueError(f"{a.inputs_json}: unknown key(s) {unknown}")
        for key, value in spec.items():
            setattr(a, key, value)
    missing = [
        k for k in ("subjects", "parcellated", "anatomy", "participants") if not getattr(a, k)
    ]
    if missing:
        flags = ", ".join("--" + k for k in missing)
        raise ValueError(f"shard needs {flags} (or --inputs-json with those keys)")
    extra = None
    if a.channels:
        n = len(a.channels)
        if len(a.extra_anatomy or []) != n * len(a.subjects):
            raise ValueError(
                f"--extra-anatomy needs {n} file(s) per subject ({n * len(a.subjects)}), "
                f"got {len(a.extra_anatomy or [])}"
            )
        extra = {c: a.extra_anatomy[i::n] for i, c in enumerate(a.channels)}
    write_shards(
        a.subjects,
        a.parcellated,
        a.anatomy,
        a.participants,
        a.texts,
        a.out,
        a.settings,
        extra_anatomy=extra,
        label_channels=a.label_channels,
        point_clouds=a.point_clouds,
        **{key: getattr(a, key) for key in ("bold", "events")},  # shard.volume_series
    )


#: the subcommands ``modalmerge batch`` runs: the per-subject data stages
BATCHABLE = ("acquire-subject", "preprocess", "parcellate")


def _json_commands(text: str) -> list[list[str]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from exc
    if not isinstance(value, list) or not all(
        isinstance(c, list) and c and all(isinstance(w, str) for w in c) for c in value
    ):
        raise argparse.ArgumentTypeError("expected a JSON list of command lines (lists of str)")
    return value


def _batch(a: argparse.Namespace) -> None:
    """Several per-subject commands in this one process: the imports are paid once. Each
    command writes its own outputs atomically; the first failure stops the batch."""
    parser = build_parser()
    if a.commands_file:  # the workflow's form: the commands stay out of Snakemake's metadata
        a.commands = _json_commands(Path(a.commands_file).read_text())
    if not a.commands:
        raise ValueError("batch needs --commands or --commands-file")
    for i, argv in enumerate(a.commands, 1):
        if argv[0] not in BATCHABLE:
            raise ValueError(f"batch command {i}: {argv[0]!r} is not one of {BATCHABLE}")
        args = parser.parse_args(argv)
        start = time.perf_counter()
        try:
            args.func(args)
        except Exception:
            log.error("batch command %d/%d (%s) failed", i, len(a.commands), " ".join(argv[:1]))
            raise
        log.info(
            "batch %d/%d: %s in %.2f s", i, len(a.commands), argv[0], time.perf_counter() - start
        )


def _shard_regions(a: argparse.Namespace) -> None:
    from modalmerge.data.shards.regions import write_region_shards

    write_region_shards(a.regions, a.out, a.settings)


def _workers(value: str) -> int | None:
    """``--workers``: a count >= 0, or ``auto`` (None: derived from the job's CPUs)."""
    if value == "auto":
        return None
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count >= 0 or auto, got {value!r}")
    return int(value)


def _train(a: argparse.Namespace) -> None:
    from modalmerge.stages.train import train_experiment

    train_experiment(
        a.shards, a.experiment, a.settings, a.out_dir, threads=a.threads, workers=a.workers
    )


def _evaluate(a: argparse.Namespace) -> None:
    from modalmerge.stages.evaluate import evaluate_experiment

    evaluate_experiment(
        a.model,
        a.shards,
        a.experiment,
        a.settings,
        a.out_metrics,
        a.out_predictions,
        truth_dir=a.truth,
        preprocess=a.preprocess,
        parcellate=a.parcellate,
    )


def _summarize(a: argparse.Namespace) -> None:
    from modalmerge.evaluation.summary import summarize

    summarize(a.metrics, a.out)


def _summarize_repeats(a: argparse.Namespace) -> None:
    from modalmerge.evaluation.summary_repeats import summarize_repeats

    summarize_repeats(a.summaries, a.out)


def _figures(a: argparse.Namespace) -> None:
    from modalmerge.stages.figures import draw_experiment_figures

    draw_experiment_figures(
        a.model,
        a.history,
        a.predictions,
        a.metrics,
        a.shards,
        a.atlas,
        a.labels,
        a.experiment,
        a.settings,
        a.out_dir,
    )


def _summary_chart(a: argparse.Namespace) -> None:
    from modalmerge.stages.figures import draw_summary_chart

    draw_summary_chart(a.summary, a.settings, a.out)


def _site_summary(a: argparse.Namespace) -> None:
    from modalmerge.stages.sites import write_site_summary

    write_site_summary(a.folds or a.metrics, a.out, a.figure, a.dpi)


def _demo(a: argparse.Namespace) -> None:
    from modalmerge.stages.demo import run_demo

    run_demo(a.out_dir, epochs=a.epochs, seed=a.seed)


def build_parser() -> argparse.ArgumentParser:
    # Over 60 lines: one declarative argparse block per subcommand, the CLI's whole surface in one place.
    parser = argparse.ArgumentParser(prog="modalmerge", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def settings(p: argparse.ArgumentParser, section: str) -> None:
        """``--settings``: the config section as JSON, parsed into its typed settings."""
        p.add_argument(
            "--settings", type=_section(section), required=True, help=f"config['{section}'] as JSON"
        )

    def experiment(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--experiment",
            type=_section("experiments"),
            required=True,
            help="one entry of config['experiments']",
        )

    p = command("acquire-cohort", _acquire_cohort, "write cohort-level raw/ files and the atlas")
    p.add_argument("--dataset", type=_json, required=True, help="config['dataset'] as JSON")
    p.add_argument("--root", required=True, help="results/<dataset>/")
    p.add_argument(
        "--part",
        action="append",
        choices=("table", "atlas"),
        help="write only this part (repeatable; default both): the cohort table and raw/ "
        "cohort files, or atlas/",
    )

    p = command("acquire-subject", _acquire_subject, "write one subject's raw/ files")
    p.add_argument("--dataset", type=_json, required=True, help="config['dataset'] as JSON")
    p.add_argument("--root", required=True)
    p.add_argument("--subject", required=True)

    p = command("batch", _batch, "run several acquire-subject/preprocess/parcellate commands")
    p.add_argument(
        "--commands",
        type=_json_commands,
        default=None,
        help='JSON list of command lines, e.g. [["preprocess", "--settings", ...], ...]',
    )
    p.add_argument("--commands-file", default=None, help="a file holding that JSON list")

    p = command("preprocess", _preprocess, "resample, mask, clean one subject")
    settings(p, "preprocess")
    for name in ("t1", "atlas", "out-t1"):
        p.add_argument(f"--{name}", required=True)
    for name in ("bold", "out-bold"):  # both omitted for anatomy-only data
        p.add_argument(f"--{name}", default=None)
    p.add_argument("--confounds", default=None)
    p.add_argument(
        "--chunk-mb",
        type=int,
        default=None,
        help="preprocess.chunk_mb: MB per chunk of a long BOLD run (default: the setting's)",
    )
    p.add_argument(
        "--extra",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "IN", "OUT"),
        help="another anatomy image onto the atlas grid (repeatable), e.g. FLAIR",
    )
    p.add_argument(
        "--label", action="append", default=[], help="an --extra NAME that is a label image"
    )
    p.add_argument(
        "--time-split",
        type=_section("shard"),
        default=None,
        help="config['shard'] as JSON when it splits runs in time: each block cleaned alone",
    )

    p = command(
        "parcellate", _parcellate, "ROI time series, connectivity and features of one subject"
    )
    settings(p, "parcellate")
    for name in ("t1", "atlas", "labels", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--bold", default=None, help="omit for anatomy-only data")
    for name in ("out-timeseries", "out-relmat", "out-features"):  # BIDS-derivative TSVs
        p.add_argument(f"--{name}", default=None)
    p.add_argument(
        "--chunk-mb",
        type=float,
        default=None,
        help="preprocess.chunk_mb: MB per chunk of a cleaned run read in volumes (default: its default)",
    )

    p = command("shard", _shard, "write HDF5 shards with subject-level splits")
    settings(p, "shard")
    p.add_argument(
        "--inputs-json",
        default=None,
        help="a JSON object holding the lists below (subjects, parcellated, anatomy, texts, "
        "participants, channels, extra_anatomy, label_channels, point_clouds)",
    )
    for name in ("subjects", "parcellated", "anatomy"):
        p.add_argument(f"--{name}", nargs="+", default=None)
    p.add_argument("--texts", nargs="+", default=None, help="omit for data without texts")
    p.add_argument("--channels", nargs="+", default=[], help="names of further image channels")
    p.add_argument(
        "--extra-anatomy", nargs="+", default=None, help="their files, subject-major order"
    )
    p.add_argument("--label-channels", nargs="+", default=[], help="channels holding labels")
    p.add_argument("--point-clouds", nargs="+", default=None, help="surface clouds per subject")
    p.add_argument("--bold", nargs="+", default=None, help="shard.volume_series: cleaned BOLD")
    p.add_argument("--events", default=None, help="shard.volume_series: the events table")
    p.add_argument("--participants", default=None)
    p.add_argument("--out", required=True)

    p = command(
        "shard-regions",
        _shard_regions,
        "write HDF5 shards whose samples are regions, split in spatial blocks",
    )
    settings(p, "shard")
    p.add_argument("--regions", required=True, help="raw/regions.tsv")
    p.add_argument("--out", required=True)

    p = command("train", _train, "train one experiment")
    settings(p, "train")
    experiment(p)
    p.add_argument("--shards", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="data-loader workers per rank (train.num_workers), or auto (the default): from "
        "the CPUs",
    )

    p = command("evaluate", _evaluate, "evaluate one experiment on held-out test subjects")
    settings(p, "evaluate")
    experiment(p)
    for name in ("model", "shards", "out-metrics", "out-predictions"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--truth", default=None, help="truth/ of a synthetic dataset (noise ceiling)")
    for section in ("preprocess", "parcellate"):  # applied to the noise-free runs in truth/
        p.add_argument(
            f"--{section}",
            type=_section(section),
            default=None,
            help=f"config['{section}'] as JSON: the observed runs' settings (noise ceiling)",
        )

    p = command("summarize", _summarize, "gather metrics.json files into summary.csv")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)

    p = command(
        "summarize-repeats",
        _summarize_repeats,
        "gather the repeats' summary.csv files (repeat 0 first) into summary_repeats.csv",
    )
    p.add_argument("--summaries", nargs="+", required=True)
    p.add_argument("--out", required=True)

    p = command("figures", _figures, "draw one experiment's figures")
    settings(p, "figures")
    experiment(p)
    for name in (
        "model",
        "history",
        "predictions",
        "metrics",
        "shards",
        "atlas",
        "labels",
        "out-dir",
    ):
        p.add_argument(f"--{name}", required=True)

    p = command("summary-chart", _summary_chart, "draw every experiment against its baselines")
    settings(p, "figures")
    p.add_argument("--summary", required=True)
    p.add_argument("--out", required=True)

    p = command(
        "site-summary", _site_summary, "leave-one-site-out: scores per held-out site (CSV, figure)"
    )
    folds = p.add_mutually_exclusive_group(required=True)
    folds.add_argument("--folds", help="a folder of <harmonize>/<site>/<experiment>/metrics.json")
    folds.add_argument(
        "--metrics",
        nargs="+",
        help="the folds' .../<harmonize>/<site>/eval/<experiment>/metrics.json",
    )
    p.add_argument("--out", required=True, help="site_summary.csv")
    p.add_argument("--figure", required=True, help="scores by site (.png)")
    p.add_argument("--dpi", type=int, default=110)

    p = command("demo", _demo, "a short standalone demo: train and draw a tiny planted task")
    p.add_argument("--out-dir", default="results/demo")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    start = time.perf_counter()
    from modalmerge.io import DeviceError

    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError, OSError, DeviceError) as exc:
        # Bad input: one line that names the file and the fault, no traceback.
        # (modalmerge.io.InputError is a ValueError.) --verbose shows the traceback.
        if args.verbose:
            log.exception("failed")
        print(f"modalmerge {args.command}: error: {exc}", file=sys.stderr)
        return 1
    log.info("%s finished in %.1f s", args.command, time.perf_counter() - start)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
