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

#: MB of memory per MB of input (on disk, so gzip-compressed for images), by rule. Measured
#: for preprocess and parcellate (benchmarks/bench_preprocess_memory.py, docs/benchmarks.md):
#: preprocess streams the run in chunks of ``preprocess.chunk_mb``, so its peak no longer
#: grows with the run (219 MB for the default 8 MB run, 1,149 MB for a 1,094 MB HCP-size run
#: at chunk_mb 256: about 220 MB + 3.6 x chunk_mb); 1 MB per MB is a margin above that line.
#: parcellate reads a run larger than one such chunk in chunks: 594-595 MB for HCP-size runs of
#: 300 and 1,200 volumes (it held the whole float32 run before: 8,341 MB for a 981 MB cleaned
#: one), 161 MB for the default 5.4 MB run; 1 MB per MB is a margin. The others are estimates
#: (not measured).
MEM_PER_INPUT_MB: dict[str, float] = {
    "acquire_atlas": 4.0,
    "acquire_cohort": 1.0,
    "acquire_subject": 4.0,
    "preprocess": 1.0,
    "parcellate": 1.0,
    "shard": 2.0,
    "evaluate": 2.0,
    "figures": 2.0,
    "summarize": 1.0,
    "summary_chart": 1.0,
    "summarize_repeats": 1.0,
    "site_summary": 1.0,
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

    >>> stage_mem_mb("parcellate", 100.0, 1, {"mem_mb": 2000})
    2100
    >>> stage_mem_mb("parcellate", 100.0, 2, {"mem_mb": 2000, "stage_mem_mb": {"parcellate": 8000}})
    16200
    """
    if rule not in MEM_PER_INPUT_MB:
        raise ValueError(f"no memory estimate for rule {rule!r}")
    cluster = ClusterSettings.coerce(cluster)
    base = cluster.stage_mem_mb.get(rule, cluster.mem_mb)
    per_input = cluster.mem_per_input_mb.get(rule, MEM_PER_INPUT_MB[rule])
    return int(math.ceil((base + per_input * max(float(input_mb), 0.0)) * max(int(attempt), 1)))
