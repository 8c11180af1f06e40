"""The optimiser of a MultiModalModel (issue 19, item 7): what AdamW decays, onecycle's betas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modalmerge.models import MultiModalModel
from modalmerge.training.schedule import make_optimizer, make_scheduler

torch.set_num_threads(1)


def groups(model: nn.Module, weight_decay: float = 0.1) -> tuple[set[str], set[str]]:
    """Parameter names in the decayed and the undecayed group of ``make_optimizer``."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=weight_decay)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == weight_decay and plain["weight_decay"] == 0.0
    return {name_of[id(p)] for p in decayed["params"]}, {name_of[id(p)] for p in plain["params"]}


@pytest.mark.parametrize(
    "condition,target,encoder,decoder",
    [
        ("text", "text", "gru", "transformer"),
        ("time_series", "time_series", "transformer", "lstm"),
        ("tabular", "image", "mlp", "deconv"),
    ],
)
def test_adamw_decays_the_weight_matrices_of_layers_only(condition, target, encoder, decoder):
    model = MultiModalModel(
        condition,
        target,
        condition_encoder=encoder,
        target_decoder=decoder,
        embedding_dim=16,
        num_attention_heads=2,
        condition_shape=(6, 3) if condition == "time_series" else None,
        target_shape={"time_series": (6, 3), "image": (1, 8, 8)}.get(target),
        vocab_size=12,
        max_length=8,
        n_numeric=2,
        categorical_cardinalities=[3],
    )
    decayed, plain = groups(model)
    assert decayed.isdisjoint(plain)
    assert decayed | plain == {n for n, _ in model.named_parameters()}
    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for name, _ in module.named_parameters(recurse=False):
            full = prefix + name
            if isinstance(module, layers) and name == "weight":
                assert full in decayed
            elif isinstance(module, (nn.Embedding, nn.LayerNorm, nn.GroupNorm)):
                assert full in plain
            elif name.startswith("bias") or name.endswith("bias"):
                assert full in plain
    # learned queries, position and column tables are parameters of no layer: not decayed
    tables = {"decoder.query", "encoder.position", "decoder.position", "encoder.channel_embedding"}
    tables |= {"encoder.numeric_weight", "encoder.category_embedding.weight"}
    present = tables & {n for n, _ in model.named_parameters()}
    assert present and present <= plain
    for name, param in model.named_parameters():  # every decayed tensor is a matrix or kernel
        if name in decayed:
            assert param.dim() >= 2


def test_onecycle_keeps_the_documented_betas():
    model = nn.Linear(3, 2)
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    scheduler = make_scheduler(optimizer, "onecycle", total_steps=20, warmup_fraction=0.2)
    seen = set()
    for _ in range(20):
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
        seen |= {tuple(group["betas"]) for group in optimizer.param_groups}
    assert seen == {(0.9, 0.95)}
