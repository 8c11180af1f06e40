"""An ensemble of independently trained models of one configuration (``train.ensemble: K``).

K members share one :class:`~modalmerge.models.model.MultiModalModel` configuration and
differ only in their training seed (member k trains with ``train.seed + k``). The ensemble
predicts the mean of the members' predictions and, for a cross-attention model, returns
the mean of their attention weights, so the attention an ensemble draws or scores is the
mean over training seeds, heads and samples. One fit's attention is one draw: on the
regional planted cohort the links a single fit localises vary with its training seed
(docs/benchmarks.md, "Stable across training seeds"); the mean over seeds is the stable
quantity. Generative (diffusion) models and text targets are not ensembled: a sample of
several denoisers and a greedy decoding of averaged word logits are different methods,
not means.

File format: ``{"config": <the members' config>, "members": [state_dict, ...]}``;
:func:`load_model` reads it or a single model's ``{"config", "state_dict"}``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from modalmerge.io import InputError, atomic_path
from modalmerge.models.model import ModelOutput, MultiModalModel, read_model_file
from modalmerge.settings import ensemble_refusal

#: attributes an ensemble answers with its first member's (equal for every member: the
#: configuration, shapes, tokenizer, token provenance, encoder and decoder geometry)
SHARED = frozenset({
    "config", "tokenizer", "generative", "target_type", "condition_type", "target_shape",
    "condition_shape", "conditioning_method", "condition_encoder_name",
    "target_decoder_name", "table_schema", "condition_provenance", "target_provenance",
    "encoder", "decoder", "validate_inputs", "n_numeric", "categorical_cardinalities",
})  # fmt: skip


class ModelEnsemble(nn.Module):
    """K trained :class:`MultiModalModel` members of one configuration, used as one model.

    ``forward`` returns the members' mean prediction (tabular categorical columns: the log
    of the mean class probabilities, so a softmax gives the mean probabilities) and their
    mean attention. ``n_parameters`` counts every member's parameters.
    """

    def __init__(self, members: list[MultiModalModel]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        config = members[0].config
        for i, member in enumerate(members):
            if not isinstance(member, MultiModalModel):
                raise ValueError(f"member {i} is a {type(member).__name__}, not a MultiModalModel")
            if member.config != config:
                raise ValueError(f"member {i}'s configuration differs from member 0's")
        refusal = ensemble_refusal(members[0].conditioning_method, members[0].target_type)
        if refusal is not None:
            raise ValueError(f"cannot ensemble this model: {refusal}")
        self.members = nn.ModuleList(members)

    def __getattr__(self, name: str):
        if name in SHARED:
            return getattr(self.members[0], name)
        return super().__getattr__(name)

    def __len__(self) -> int:
        return len(self.members)

    def forward(
        self,
        condition: torch.Tensor,
        target: torch.Tensor | None = None,
        time_offset: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> ModelOutput:
        """The members' mean prediction and (with ``return_attention``) mean attention."""
        outputs = [m(condition, target, time_offset, return_attention) for m in self.members]
        prediction = _mean_prediction([o.prediction for o in outputs])
        if not return_attention or outputs[0].attention is None:
            return ModelOutput(prediction, None)
        return ModelOutput(prediction, torch.stack([o.attention for o in outputs]).mean(0))

    def n_parameters(self) -> int:
        """Trainable parameters of all members together."""
        return sum(m.n_parameters() for m in self.members)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``{"config", "members"}`` to ``path`` atomically (through a file object, as
        :meth:`MultiModalModel.save`, so equal weights give equal bytes)."""
        members = [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.members]
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save({"config": self.config, "members": members}, fh)
        return Path(path)


def _mean_prediction(predictions: list):
    first = predictions[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(predictions).mean(0)
    if isinstance(first, dict) and set(first) == {"numeric", "categorical"}:
        columns = zip(*(p["categorical"] for p in predictions), strict=True)
        return {
            "numeric": torch.stack([p["numeric"] for p in predictions]).mean(0),
            "categorical": [
                torch.stack([c.float().softmax(-1) for c in col]).mean(0).log() for col in columns
            ],
        }
    raise TypeError(f"cannot average predictions of type {type(first).__name__}")


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> MultiModalModel | ModelEnsemble:
    """A model written by :meth:`MultiModalModel.save` or :meth:`ModelEnsemble.save`."""
    path, data = read_model_file(path, map_location)  # read once, whichever it holds
    if not (isinstance(data, dict) and "members" in data):
        return MultiModalModel.from_file_data(path, data, map_location)
    members = data["members"]
    if "config" not in data or not isinstance(members, list) or not members:
        raise InputError(path, "ensemble file must hold {'config', 'members': [state_dict, ...]}")
    models = []
    for i, state in enumerate(members):
        model = MultiModalModel.from_config(data["config"])
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as err:
            raise InputError(path, f"member {i}: {err}") from None
        models.append(model.to(map_location))
    try:
        return ModelEnsemble(models)
    except ValueError as err:
        raise InputError(path, str(err)) from None
