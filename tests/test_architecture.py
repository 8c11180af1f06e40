"""The package's shape (issue #10): which layers the data stages may import (data never
pulls in the figures, the models or the training loop, so editing those does not rerun
the data), and concepts that have one definition."""

import ast
from pathlib import Path

import pytest

import modalmerge
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


def test_every_model_modality_has_a_shape_rule():
    """A modality added to MODALITIES needs a default shape (build_model then reads its shape
    from the shards) unless it is text or tabular, whose shapes come from the tokenizer and
    the table; otherwise the model would be built without the shards' shape."""
    from modalmerge.modalities import MODALITIES
    from modalmerge.models.model import DEFAULT_SHAPES, SHAPE_LAYOUTS

    assert set(MODALITIES) == set(DEFAULT_SHAPES) | {"text", "tabular"}
    assert set(SHAPE_LAYOUTS) == set(DEFAULT_SHAPES)


def _docstring_lines(node) -> int:
    body = getattr(node, "body", None)
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[0].end_lineno - body[0].lineno + 1
    return 0


def test_modules_and_functions_stay_small_or_say_why():
    """No module over 400 lines of code and no function over 60 (docstrings, comments and
    blank lines not counted) without a reason written at its top: ``# Over 400 lines: ...``
    in the module's first lines, ``# Over 60 lines: ...`` right after the function's docstring."""
    package = Path(modalmerge.__file__).parent
    unexplained = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        scopes = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        docs = sum(_docstring_lines(n) for n in ast.walk(tree) if isinstance(n, scopes))
        code = sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))
        if code - docs > 400 and not any(line.startswith("# Over 400 lines") for line in lines[:5]):
            unexplained.append(f"{path.relative_to(package)}: {code - docs} lines")
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            head = lines[node.lineno - 1 : node.body[0].end_lineno + 2]
            if body > 60 and not any("# Over 60 lines" in line for line in head):
                unexplained.append(f"{path.relative_to(package)}:{node.lineno} {node.name}: {body}")
    assert not unexplained, unexplained
