# figures: attention on the anatomy, predictions, connectivity, learning curves, summary chart.


# the atlas: acquire_atlas in the subject DAG, acquire_cohort in the region DAG (regions.smk)
ATLAS_RULE = rules.acquire_atlas if SAMPLE_UNIT == "subject" else rules.acquire_cohort


rule figures:
    input:
        model=rules.train.output.model,
        history=rules.train.output.history,
        predictions=rules.evaluate.output.predictions,
        metrics=rules.evaluate.output.metrics,
        shards=rules.shard.output[0],
        atlas=ATLAS_RULE.output.atlas,
        labels=ATLAS_RULE.output.labels,
    output:
        report(
            directory(f"{FROOT}/figures/{{experiment}}"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="{experiment}",
        ),
    log:
        f"{FLOGS}/figures/{{experiment}}.log",
    benchmark:
        f"{FBENCH}/figures/{{experiment}}.tsv"
    threads: 1
    resources:
        **stage_resources("figures"),
    params:
        settings=section_json("figures"),
        experiment=experiment_json,
        code=fingerprint("modalmerge.stages.figures"),
    shell:
        "modalmerge figures --settings {params.settings:q} --experiment {params.experiment:q}"
        " --model {input.model:q} --history {input.history:q} --predictions {input.predictions:q}"
        " --metrics {input.metrics:q} --shards {input.shards:q} --atlas {input.atlas:q}"
        " --labels {input.labels:q} --out-dir {output:q} > {log:q} 2>&1"


rule summary_chart:
    input:
        rules.summarize.output[0],
    output:
        report(
            f"{FROOT}/figures/summary.png",
            caption="../report/summary_chart.rst",
            category="Summary",
        ),
    log:
        f"{FLOGS}/figures/summary.log",
    benchmark:
        f"{FBENCH}/figures/summary.tsv"
    threads: 1
    resources:
        **stage_resources("summary_chart"),
    params:
        settings=section_json("figures"),
        code=fingerprint("modalmerge.stages.figures"),
    shell:
        "modalmerge summary-chart --settings {params.settings:q} --summary {input:q}"
        " --out {output:q} > {log:q} 2>&1"
