# ModalMerge workflow: acquire → preprocess → parcellate → shard → train → evaluate → figures → report.
# The science lives in the `modalmerge` package; each rule calls one `modalmerge` subcommand.
from snakemake.utils import min_version, validate

from modalmerge.mean_sources import check_mean_sources
from modalmerge.scheduler_fix import patch_scheduler
from modalmerge.settings import from_config

min_version("9.0")
patch_scheduler()  # --cores holds on Snakemake 9.10-9.16 too (modalmerge/scheduler_fix.py)


# The embedded default; a --configfile given on the command line replaces it rather than
# being merged into it (a merge would leak e.g. the synthetic dataset.params into another kind).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# Every section typed (modalmerge/settings.py, the one definition of keys, defaults and allowed
# values): a bad value stops the DAG here with a message naming its key, e.g.
# "preprocess.high_pass: must be > 0 or null, got 0". The schema, generated from the same
# dataclasses (`make schema`), then fills their defaults into `config`.
SETTINGS = from_config(config)
check_mean_sources(SETTINGS.experiments)  # method_options mean_from names a usable experiment
validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


if SAMPLE_UNIT == "region":  # group data: one region table -> spatially split shards

    include: "workflow/rules/regions.smk"

else:  # per subject: acquire -> preprocess -> parcellate -> shard

    include: "workflow/rules/acquire.smk"
    include: "workflow/rules/preprocess.smk"
    include: "workflow/rules/parcellate.smk"
    include: "workflow/rules/batches.smk"  # cluster.subjects_per_job > 1
    include: "workflow/rules/shard.smk"


include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


# Tiny aggregation rules run in the Snakemake process itself, never as cluster jobs: under
# SLURM they would wait in the queue for seconds of work (docs/cluster.md).
localrules:
    all,
    environment,
    site_summary,
    summarize,
    summary_chart,


rule all:
    default_target: True
    input:
        final_outputs(),
