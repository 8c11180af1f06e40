# Paths, parameters and code fingerprints shared by the rules: one place where paths are built.
import json

from modalmerge.fingerprint import code_fingerprint
from modalmerge.stages.acquire import source_module_name, source_subject_ids, source_task

ROOT = f"results/{config['dataset']['name']}"
LOGS = f"logs/{config['dataset']['name']}"
BENCH = f"benchmarks/results/{config['dataset']['name']}"
SUBJECTS = source_subject_ids(config["dataset"])
TASK = source_task(config["dataset"])
CLUSTER = config["cluster"]
ACQUIRE_CODE = code_fingerprint(
    "modalmerge.stages.acquire", source_module_name(config["dataset"]["kind"])
)
EXPERIMENTS = {e["name"]: e for e in config["experiments"]}
ENV = "../../envs/modalmerge.yaml"

if len(EXPERIMENTS) != len(config["experiments"]):
    raise ValueError("config.yaml: experiment names must be unique")

wildcard_constraints:
    subject="sub-[A-Za-z0-9]+",
    experiment="|".join(EXPERIMENTS) or "NONE",


def as_json(value):
    """A config section as one canonical JSON string: the rule reruns when it changes."""
    return json.dumps(value, sort_keys=True)


def fingerprint(*modules):
    """Fingerprint of the package code a stage runs (Snakemake's code trigger sees only the rule)."""
    return code_fingerprint(*modules)


def experiment_json(wildcards):
    return as_json(EXPERIMENTS[wildcards.experiment])


def experiment_gpus(wildcards):
    return EXPERIMENTS[wildcards.experiment].get("gpus", 0)


def final_outputs():
    outputs = [f"{ROOT}/eval/summary.csv", f"{ROOT}/figures/summary.png"]
    outputs += [f"{ROOT}/figures/{name}" for name in EXPERIMENTS]
    return outputs
