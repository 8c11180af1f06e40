"""Memory of the data stages' jobs: it grows with the input and with each retry (torch-free,
imported by ``workflow/rules/common.smk``; see ``docs/cluster.md``).

A job asks for ``(base + per_input x input_mb) x attempt`` MB, where ``base`` is
``cluster.stage_mem_mb[rule]`` (else ``cluster.mem_mb``), ``per_input`` is
``cluster.mem_per_input_mb[rule]`` (else :data:`MEM_PER_INPUT_MB`) and ``attempt`` is
Snakemake's retry count (1 first; ``retries`` in a profile resubmits an OOM-killed job with
twice, then three times the memory).
"""

from __future__ import annotations

import math

from modalmerge.settings import ClusterSettings

#: MB of memory per MB of input (on disk, so gzip-compressed for images), by rule: estimates.
#: preprocess decompresses the BOLD (about 2-3x), holds it as float64 (4x int16) and
#: resamples it onto the atlas grid (4.6x for a 2 mm run on the 1 mm Desikan-Killiany
#: atlas): whole 4D runs in memory; parcellate holds one float32 run; the others stream.
MEM_PER_INPUT_MB: dict[str, float] = {
    "acquire_atlas": 4.0,
    "acquire_cohort": 1.0,
    "acquire_subject": 4.0,
    "preprocess": 24.0,
    "parcellate": 8.0,
    "shard": 2.0,
    "evaluate": 2.0,
    "figures": 2.0,
    "summarize": 1.0,
    "summary_chart": 1.0,
    "summarize_repeats": 1.0,
}


def check_stage_memory(cluster: ClusterSettings | dict) -> None:
    """Refuse an unknown rule or a value that is not a positive number in
    ``cluster.stage_mem_mb`` / ``cluster.mem_per_input_mb`` (a ValueError naming the key)."""
    cluster = ClusterSettings.coerce(cluster)
    for name in ("stage_mem_mb", "mem_per_input_mb"):
        for rule, value in getattr(cluster, name).items():
            if rule not in MEM_PER_INPUT_MB:
                raise ValueError(
                    f"cluster.{name}.{rule}: not a data stage's rule; one of "
                    f"{sorted(MEM_PER_INPUT_MB)}"
                )
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or value < 0 or (name == "stage_mem_mb" and value < 100):
                raise ValueError(
                    f"cluster.{name}.{rule}: must be a number "
                    f"{'>= 100' if name == 'stage_mem_mb' else '>= 0'}, got {value!r}"
                )


def stage_mem_mb(rule: str, input_mb: float, attempt: int, cluster: ClusterSettings | dict) -> int:
    """Memory (MB) of one job of ``rule`` with ``input_mb`` MB of input, at retry ``attempt``.

    >>> stage_mem_mb("preprocess", 100.0, 1, {"mem_mb": 2000})
    4400
    >>> stage_mem_mb("preprocess", 100.0, 2, {"mem_mb": 2000, "stage_mem_mb": {"preprocess": 8000}})
    20800
    """
    if rule not in MEM_PER_INPUT_MB:
        raise ValueError(f"no memory estimate for rule {rule!r}")
    cluster = ClusterSettings.coerce(cluster)
    base = cluster.stage_mem_mb.get(rule, cluster.mem_mb)
    per_input = cluster.mem_per_input_mb.get(rule, MEM_PER_INPUT_MB[rule])
    return int(math.ceil((base + per_input * max(float(input_mb), 0.0)) * max(int(attempt), 1)))
