"""``method_options: {mean_from: <experiment>}`` of a residual diffusion experiment, at the
config level: which experiment it names, and whether that one can supply its frozen encoder
and mean head (:func:`modalmerge.models.generative.adopt_mean` checks the trained models
again when the weights are copied).

The workflow calls :func:`check_mean_sources` right after
:func:`modalmerge.settings.from_config` (``workflow/rules/common.smk``), so a bad name stops
``snakemake -n`` at once, naming the key. It lives outside ``settings.py`` on purpose: every
stage's code fingerprint includes ``settings.py``, so an edit there reruns the whole DAG.
No torch here (the Snakefile imports it).

:func:`priority_targets` names the outputs of the longest chain of a run (a ``mean_from``
experiment's evaluate); ``make run`` passes them to Snakemake's ``--prioritize``
(``workflow/priority_targets.py config.yaml``, a script beside the rules: reading YAML is
Snakemake's business, and the package does not import ``yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modalmerge.settings import ExperimentSettings


def mean_from(experiment: ExperimentSettings) -> str | None:
    """The experiment whose trained encoder and decoder ``experiment`` copies (frozen) as
    its encoder and mean head, or None."""
    options = experiment.method_options
    return options["mean_from"] if "mean_from" in options else None


#: what a mean_from source shares with the diffusion experiment that names it
SHARED = ("condition", "target", "encoder", "embedding_dim", "heads", "encoder_options")


def _check_calibrate_spread(i: int, e: ExperimentSettings) -> None:
    """``calibrate_spread`` (residual diffusion only) and ``calibrate_mean`` (with
    ``calibrate_spread`` only) as bools, else ValueError naming the key."""
    options = e.method_options
    if "calibrate_mean" in options:
        key = f"experiments[{i}].method_options.calibrate_mean"
        if options["calibrate_mean"] not in (True, False):
            raise ValueError(f"{key}: true or false, got {options['calibrate_mean']!r}")
        if options["calibrate_mean"] and options.get("calibrate_spread") is not True:
            raise ValueError(
                f"{key}: chooses the mean's scale with the draws' spread: needs "
                f"calibrate_spread: true ({e.name!r})"
            )
    if "calibrate_spread" not in options:
        return
    key = f"experiments[{i}].method_options.calibrate_spread"
    if options["calibrate_spread"] not in (True, False):
        raise ValueError(f"{key}: true or false, got {options['calibrate_spread']!r}")
    residual = "residual" in options and options["residual"] is True
    if options["calibrate_spread"] and (e.method != "diffusion" or not residual):
        raise ValueError(
            f"{key}: scales the residual draws around a mean head: needs method diffusion "
            f"with residual: true ({e.name!r})"
        )


def check_mean_sources(experiments: Sequence[ExperimentSettings]) -> None:
    """Each ``method_options.mean_from`` names another experiment of the config: a
    deterministic ``cross_attention`` one (one layer, no options) with the same condition,
    target, encoder, width and heads, whose decoder options are the mean head's; the
    model-level checks (shapes, decoder names) run again when the weights are copied."""
    by_name = {e.name: e for e in experiments}
    for i, e in enumerate(experiments):
        name = mean_from(e)
        whiten = e.method_options["whiten"] if "whiten" in e.method_options else False
        if whiten not in (True, False):
            raise ValueError(
                f"experiments[{i}].method_options.whiten: true or false, got {whiten!r}"
            )
        if whiten and (name is None or e.target != "time_series"):
            raise ValueError(
                f"experiments[{i}].method_options.whiten: whitens the residuals of a mean_from "
                f"model across ROIs: needs mean_from and a time_series target ({e.name!r})"
            )
        _check_calibrate_spread(i, e)
        if name is None:
            continue
        key = f"experiments[{i}].method_options.mean_from"
        if e.method != "diffusion":
            raise ValueError(f"{key}: needs method diffusion, {e.name!r} has {e.method!r}")
        options = e.method_options
        if "residual" not in options or options["residual"] is not True:
            raise ValueError(f"{key}: needs residual: true in method_options ({e.name!r})")
        if not isinstance(name, str) or name not in by_name or name == e.name:
            raise ValueError(
                f"{key}: no other experiment named {name!r} in this config; "
                f"known: {', '.join(n for n in by_name if n != e.name)}"
            )
        source = by_name[name]
        if source.method == "diffusion":
            raise ValueError(
                f"{key}: {source.name!r} is itself generative (method diffusion); name a "
                "deterministic cross_attention experiment"
            )
        if source.method != "cross_attention" or source.layers != 1 or source.method_options:
            raise ValueError(
                f"{key}: {source.name!r} must be a one-layer cross_attention experiment "
                f"without method_options (it has {source.method!r}, layers {source.layers})"
            )
        mean_options = options["mean_decoder_options"] if "mean_decoder_options" in options else {}
        pairs = [(k, getattr(source, k), getattr(e, k)) for k in SHARED]
        pairs.append(("decoder_options", source.decoder_options, mean_options))
        for setting, theirs, ours in pairs:
            if theirs != ours:
                raise ValueError(
                    f"{key}: {source.name!r} has {setting} {theirs!r}, {e.name!r} "
                    f"{ours!r} (decoder_options: its mean_decoder_options)"
                )


def chain_targets(experiments: Sequence[ExperimentSettings], roots: Sequence[str]) -> list[str]:
    """The ``eval/<name>/metrics.json`` of every experiment with ``mean_from``, under each
    of ``roots`` (one per repeat and fold).

    Such an experiment is the longest chain of a run: its training waits for its source's,
    and its evaluate draws samples. ``make run`` hands these paths to Snakemake's
    ``--prioritize`` (through :func:`priority_targets` and ``workflow/priority_targets.py``),
    so the chain and every job it needs start first and the other experiments fill the
    remaining cores around it.
    """
    names = [e.name for e in experiments if mean_from(e) is not None]
    return [f"{root}/eval/{name}/metrics.json" for root in roots for name in names]


def priority_targets(config: Mapping) -> list[str]:
    """:func:`chain_targets` of a whole config, one root per repeat; none for
    leave-one-site-out folds (their fold roots need the cohort plan)."""
    from modalmerge.folds import has_folds
    from modalmerge.repeats import repeat_suffixes
    from modalmerge.settings import from_config

    settings = from_config(config)
    if has_folds(settings.shard.subject_params()):
        return []
    root = f"results/{config['dataset']['name']}"
    roots = [root + suffix for suffix in repeat_suffixes(settings.repeats)]
    return chain_targets(settings.experiments, roots)
