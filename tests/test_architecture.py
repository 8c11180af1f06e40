"""The package's shape (issue #10): which layers the data stages may import (data never
pulls in the figures, the models or the training loop, so editing those does not rerun
the data), and concepts that have one definition."""

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


def test_one_modality_check_for_models_and_shards():
    from modalmerge.data.shards import dataset, split_arrays
    from modalmerge.modalities import MODALITIES, SHARD_MODALITIES, check_modality
    from modalmerge.models import registry

    assert registry.check_modality is split_arrays.check_modality is check_modality
    assert dataset.check_modality is check_modality
    assert set(MODALITIES) < set(SHARD_MODALITIES)
    assert check_modality("connectivity", "condition", SHARD_MODALITIES) == "connectivity"
    with pytest.raises(ValueError, match=r"unknown target_type 'connectivity'; expected one of"):
        check_modality("connectivity", "target_type")  # stored in shards, not a model modality
    with pytest.raises(ValueError, match="unknown requested modality 'voxels'"):
        split_arrays.load_split_arrays("/nonexistent", "train", "voxels")
