"""Which package layers the data stages may import (issue #10): data never pulls in
the figures, the models or the training loop, so editing those does not rerun the data."""

import pytest

from modalmerge.fingerprint import module_closure

DATA_STAGES = (
    "modalmerge.stages.acquire",
    "modalmerge.data.preprocess",
    "modalmerge.data.parcellation.parcellate",
    "modalmerge.data.shards.subjects",
)
FORBIDDEN = ("modalmerge.viz", "modalmerge.models", "modalmerge.training")


@pytest.mark.parametrize("module", DATA_STAGES)
def test_data_stage_closure_has_no_viz_models_or_training(module):
    closure = module_closure(module)
    assert module in closure
    bad = [m for m in closure if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{module} imports {bad}"
