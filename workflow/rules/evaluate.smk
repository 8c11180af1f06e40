# evaluate: held-out test subjects; the model against the group mean, ridge and the noise ceiling.


rule evaluate:
    input:
        model=rules.train.output.model,
        shards=rules.shard.output[0],
    output:
        metrics=report(
            f"{FROOT}/eval/{{experiment}}/metrics.json",
            caption="../report/metrics.rst",
            category="Scores",
            subcategory="{experiment}",
        ),
        predictions=f"{FROOT}/eval/{{experiment}}/predictions.npz",
    log:
        f"{FLOGS}/evaluate/{{experiment}}.log",
    benchmark:
        f"{FBENCH}/evaluate/{{experiment}}.tsv"
    threads: 1
    resources:
        **{key: evaluate_resource(key) for key in train_job_resources(0, CLUSTER)},
    params:
        settings=section_json("evaluate"),
        experiment=experiment_json,
        truth=rep_path(f"{ROOT}/truth"),
        preprocess=section_json("preprocess"),  # the noise-free runs in truth/ are processed
        parcellate=section_json("parcellate"),  # with the observed runs' settings (ceiling)
        code=fingerprint("modalmerge.stages.evaluate"),
    shell:
        "modalmerge evaluate --settings {params.settings:q} --experiment {params.experiment:q}"
        " --model {input.model:q} --shards {input.shards:q} --truth {params.truth:q}"
        " --preprocess {params.preprocess:q} --parcellate {params.parcellate:q}"
        " --out-metrics {output.metrics:q} --out-predictions {output.predictions:q} > {log:q} 2>&1"


rule summarize:
    input:
        expand(rules.evaluate.output.metrics, experiment=EXPERIMENTS, allow_missing=True),
    output:
        report(
            f"{FROOT}/eval/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        f"{FLOGS}/evaluate/summary.log",
    benchmark:
        f"{FBENCH}/evaluate/summary.tsv"
    threads: 1
    resources:
        **stage_resources("summarize"),
    params:
        code=fingerprint("modalmerge.evaluation.summary"),
    shell:
        "modalmerge summarize --metrics {input:q} --out {output:q} > {log:q} 2>&1"


# The environment lock of the run (modalmerge.stages.environment): Python, every installed
# distribution, torch/CUDA and the git commit. Written after the summary, so it is rewritten
# whenever the scores are, and when the installed packages change (params); no stage reads it.
# The package list is a function: read only when this job is in the DAG (not for a target
# such as results/<name>/shards), its value (what Snakemake records) unchanged.
rule environment:
    input:
        summary_of_run(),
    output:
        report(
            f"{ROOT}/environment.txt",
            caption="../report/environment.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/environment.log",
    params:
        packages=lambda wildcards: as_json(distributions()),
    run:
        write_environment(output[0])


# repeats > 1 (modalmerge/repeats.py): every repeat's summary.csv -> mean, SD and "beats" counts
rule summarize_repeats:
    input:
        expand(f"{ROOT}/eval/summary.csv", rep=repeat_suffixes(REPEATS)),
    output:
        report(
            f"{ROOT0}/eval/summary_repeats.csv",
            caption="../report/summary_repeats.rst",
            category="Summary",
        ),
    log:
        f"logs/{config['dataset']['name']}/evaluate/summary_repeats.log",
    benchmark:
        f"benchmarks/results/{config['dataset']['name']}/evaluate/summary_repeats.tsv"
    threads: 1
    resources:
        **stage_resources("summarize_repeats"),
    params:
        code=fingerprint("modalmerge.evaluation.summary_repeats"),
    shell:
        "modalmerge summarize-repeats --summaries {input:q} --out {output:q} > {log:q} 2>&1"


# Leave-one-site-out folds (shard.test_site: all / harmonize: both; modalmerge/folds.py): every
# fold's metrics.json -> one site_summary.csv (scores per held-out site with intervals, paired
# differences, ComBat minus none) and the scores-by-site figure.
rule site_summary:
    input:
        expand(
            rules.evaluate.output.metrics, fold=FOLDS, experiment=EXPERIMENTS, allow_missing=True
        ),
    output:
        csv=report(
            f"{LOSO}/site_summary.csv",
            caption="../report/site_summary.rst",
            category="Summary",
        ),
        png=report(
            f"{LOSO}/site_scores.png",
            caption="../report/site_summary.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/evaluate/site_summary.log",
    benchmark:
        f"{BENCH}/evaluate/site_summary.tsv"
    threads: 1
    resources:
        **stage_resources("site_summary"),
    params:
        dpi=SETTINGS.figures.dpi,
        code=fingerprint("modalmerge.stages.sites"),
    shell:
        "modalmerge site-summary --metrics {input:q} --out {output.csv:q}"
        " --figure {output.png:q} --dpi {params.dpi:q} > {log:q} 2>&1"
