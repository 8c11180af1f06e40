"""Repeats of the whole workflow (top-level ``repeats: K``): where each lives, which seeds it uses.

Repeat ``k`` (0 <= k < K) is one branch of the DAG with its own outputs:

- repeat 0 lives in ``results/<name>/`` and is exactly the run of ``repeats: 1``
  (same paths, same seeds), so raising K reuses it;
- repeat ``k >= 1`` lives in ``results/<name>/rep-<k>/`` (logs and benchmarks
  likewise), and uses the base seeds plus ``k``: ``dataset.params.seed + k``
  for the synthetic source (a new cohort; the base is the source's default when
  the config gives none), ``shard.seed + k`` (a new split) and
  ``train.seed + k`` (new weights and batch order). Real datasets keep their
  data: only the split and training seeds change.

Stdlib only: the Snakefile imports it while planning the DAG.

>>> repeat_suffix(0), repeat_suffix(2)
('', '/rep-2')
>>> repeat_index("/rep-2")
2
>>> repeat_dataset({"name": "d", "kind": "synthetic", "params": {"seed": 4}}, 2)["params"]
{'seed': 6}
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping

#: a repeat's path suffix after results/<name> (the Snakemake wildcard ``rep``): empty for
#: repeat 0, ``/rep-<k>`` for k >= 1
REPEAT_PATTERN = r"(/rep-[1-9][0-9]*)?"
#: dataset kinds whose cohort is drawn from a seed (a repeat draws a new cohort)
SEEDED_SOURCES = ("synthetic",)


def repeat_suffix(k: int) -> str:
    """The path suffix of repeat ``k`` (``""`` for 0, ``"/rep-<k>"`` otherwise)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"repeat index must be an integer >= 0, got {k!r}")
    return f"/rep-{k}" if k else ""


def repeat_index(suffix: str) -> int:
    """The repeat index of a path suffix (the inverse of :func:`repeat_suffix`)."""
    if not re.fullmatch(REPEAT_PATTERN, suffix):
        raise ValueError(f"not a repeat suffix: {suffix!r} (expected '' or '/rep-<k>', k >= 1)")
    return int(suffix[len("/rep-") :]) if suffix else 0


def repeat_suffixes(repeats: int) -> list[str]:
    """The path suffixes of repeats 0 .. ``repeats`` - 1."""
    return [repeat_suffix(k) for k in range(repeats)]


def _base_synthetic_seed(params: Mapping) -> int:
    if "seed" in params:
        return int(params["seed"])
    from modalmerge.data.synthetic.params import SyntheticParams  # the source's own default

    return SyntheticParams().seed


def repeat_dataset(dataset: Mapping, k: int) -> Mapping:
    """The ``dataset:`` section of repeat ``k``: ``dataset`` itself for k = 0 (so repeat 0
    is the unrepeated run, down to its rule params); for a seeded source (synthetic) a
    copy whose ``params.seed`` is the base seed + k; real data unchanged."""
    if k == 0 or dataset["kind"] not in SEEDED_SOURCES:
        return dataset
    out = copy.deepcopy(dict(dataset))
    params = dict(out["params"]) if "params" in out else {}
    params["seed"] = _base_synthetic_seed(params) + k
    out["params"] = params
    return out


def repeat_seed(seed: int, k: int) -> int:
    """A split or training seed of repeat ``k``: the base seed + k."""
    return seed + k
