"""What the train, evaluate and figures stages share: building models from shards,
loading trained experiments, and running a model over a split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from modalmerge.data.shards.dataset import ShardDataset, collate_samples
from modalmerge.data.shards.split_arrays import (
    read_manifest,
    run_length,
    split_texts,
    tabular_schema,
)
from modalmerge.io import InputError, require_file
from modalmerge.models.ensemble import ModelEnsemble, load_model
from modalmerge.models.model import DEFAULT_SHAPES, MultiModalModel
from modalmerge.models.registry import import_plugins
from modalmerge.models.text import Tokenizer
from modalmerge.settings import ExperimentSettings

TEXT_MAX_LENGTH = 48


def fit_tokenizer(shard_dir: str | Path) -> Tokenizer:
    """A vocabulary built from the TRAINING subjects' texts only."""
    corpus = split_texts(shard_dir, "train")
    if not corpus:
        raise InputError(shard_dir, "the train split has no text to build a vocabulary from")
    return Tokenizer.fit(corpus)


def experiment_dataset(
    shard_dir: str | Path,
    split: str,
    experiment: ExperimentSettings | dict,
    tokenizer: Tokenizer | None = None,
) -> ShardDataset:
    """The experiment's view of one split: its condition and target, ROI subsets included.

    ``experiment``: its settings, or its ``experiments:`` entry as a mapping.
    """
    experiment = ExperimentSettings.coerce(experiment)
    return ShardDataset(
        shard_dir,
        split,
        experiment.condition,
        experiment.target_data or experiment.target,
        tokenizer=tokenizer,
        text_max_length=TEXT_MAX_LENGTH,
        condition_rois=experiment.condition_rois,
        target_rois=experiment.target_rois,
        condition_columns=experiment.condition_columns,
        target_columns=experiment.target_columns,
        condition_channels=experiment.condition_channels,
        target_channels=experiment.target_channels,
        condition_graph=experiment.condition_graph,
        target_graph=experiment.target_graph,
    )


def build_model(
    shard_dir: str | Path, experiment: ExperimentSettings | dict, tokenizer: Tokenizer | None = None
) -> MultiModalModel:
    """Build the experiment's model with the shapes the shards hold.

    The modules in ``experiment.plugins`` (the config's top-level ``plugins:``,
    which :func:`modalmerge.settings.from_config` gives every experiment) are
    imported first, so the experiment may name the blocks they register.
    """
    experiment = ExperimentSettings.coerce(experiment)
    import_plugins(experiment.plugins)
    condition, target = experiment.condition, experiment.target
    probe = experiment_dataset(shard_dir, "train", experiment, tokenizer)
    if len(probe) == 0:
        raise InputError(shard_dir, "the train split has no samples")
    sample = probe[0]
    probe.close()
    kwargs: dict = {}
    if experiment.target_data == "task_condition":  # one K-way column per volume of the window
        kwargs.update(n_numeric=0, categorical_cardinalities=task_cardinalities(shard_dir, sample))
    elif "tabular" in (condition, target):
        role = "condition" if condition == "tabular" else "target"
        n_numeric, cardinalities = tabular_schema(shard_dir, getattr(experiment, f"{role}_columns"))
        kwargs.update(n_numeric=n_numeric, categorical_cardinalities=cardinalities)
        if condition == target == "tabular":  # two views of one table
            n_numeric, cardinalities = tabular_schema(shard_dir, experiment.target_columns)
            kwargs.update(
                target_n_numeric=n_numeric, target_categorical_cardinalities=cardinalities
            )
    if "text" in (condition, target):
        kwargs.update(tokenizer=tokenizer, max_length=TEXT_MAX_LENGTH)
    if condition in DEFAULT_SHAPES:  # the modalities with an array shape (not text, tabular)
        kwargs["condition_shape"] = tuple(sample["condition"].shape)
    if target in DEFAULT_SHAPES:
        kwargs["target_shape"] = tuple(sample["target"].shape)
    decoder_options = dict(experiment.decoder_options)
    if target == "time_series" and decoder_options.get("readout") == "run":
        # the run's length is the data's: derived from the shards' window starts
        derived = run_length(shard_dir, sample["target"].shape[0])
        if decoder_options.setdefault("run_length", derived) != derived:
            raise InputError(
                shard_dir,
                f"decoder_options run_length {decoder_options['run_length']!r} disagrees "
                f"with the shards' runs ({derived} volumes to the end of the last window); "
                "leave it out (it is derived)",
            )
    return MultiModalModel(
        condition_type=condition,
        target_type=target,
        condition_encoder=experiment.encoder,
        target_decoder=experiment.decoder,
        embedding_dim=experiment.embedding_dim,
        num_attention_heads=experiment.heads,
        conditioning=experiment.method,
        conditioning_layers=experiment.layers,
        dropout=experiment.dropout,
        encoder_options=dict(experiment.encoder_options),
        decoder_options=decoder_options,
        conditioning_options=dict(experiment.method_options),
        **kwargs,
    )


def task_cardinalities(shard_dir: str | Path, sample: dict) -> list[int]:
    """``[K] * T``: the task conditions (K, the manifest's ``volume_series.task_conditions``)
    of each of a window's T volumes, the brain-decoding target read as a table."""
    from modalmerge.evaluation.decoding import task_condition_names

    names = task_condition_names(read_manifest(shard_dir), shard_dir)
    return [len(names)] * int(sample["target"].shape[0])


def load_experiment_model(
    model_path: str | Path, plugins: list[str] | None = None
) -> tuple[MultiModalModel | ModelEnsemble, Tokenizer | None]:
    """A trained model or ensemble (``train.ensemble``; eval mode, CPU) and its tokenizer
    (None without text).

    ``plugins`` (the experiment's ``plugins``) are imported first: a model built
    from a plugin's blocks loads only once they are registered again.
    """
    import_plugins(plugins)
    require_file(model_path, "trained model")
    try:
        model = load_model(model_path, map_location="cpu")
    except (RuntimeError, EOFError, KeyError) as exc:
        raise InputError(model_path, f"not a readable ModalMerge checkpoint ({exc})") from exc
    model.eval()
    return model, model.tokenizer


@dataclass
class SplitArrays:
    """All samples of one split as arrays (and the model's predictions when asked)."""

    subjects: list[str] = field(default_factory=list)
    window_start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    condition: np.ndarray | None = None
    target: np.ndarray | None = None
    prediction: np.ndarray | None = None
    categorical_scores: list[np.ndarray] = field(default_factory=list)
    attention: np.ndarray | None = None  # (n_target, n_condition), mean over heads and samples


def _prediction_arrays(prediction) -> tuple[np.ndarray, list[np.ndarray]]:
    if isinstance(prediction, dict):  # tabular: numeric + one score array per categorical column
        scores = [torch.softmax(c.float(), dim=-1).numpy() for c in prediction["categorical"]]
        numeric = prediction["numeric"].float().numpy()
        codes = [s.argmax(axis=1)[:, None].astype(np.float32) for s in scores]
        return np.concatenate([numeric, *codes], axis=1), scores
    return prediction.float().numpy(), []


class _Filled:
    """Whole-split arrays filled batch by batch at a moving row, allocated at the first batch
    (the dtype and trailing shape of each name's first batch; ``n`` rows)."""

    def __init__(self, n: int):
        self.n, self.row, self.arrays = n, 0, {}

    def put(self, name: str, values: np.ndarray) -> None:
        if name not in self.arrays:
            self.arrays[name] = np.empty((self.n, *values.shape[1:]), dtype=values.dtype)
        self.arrays[name][self.row : self.row + len(values)] = values

    def advance(self, k: int) -> None:
        self.row += k


@torch.no_grad()
def collect_split(
    shard_dir: str | Path,
    split: str,
    experiment: ExperimentSettings | dict,
    tokenizer: Tokenizer | None = None,
    model: MultiModalModel | None = None,
    batch_size: int = 32,
    attention: bool = False,
) -> SplitArrays:
    """Read every sample of ``split``; with ``model``, also its predictions (eval mode).

    With ``attention`` (a cross-attention ``model``), the same forward passes
    also give the cross-attention weights averaged over heads and samples.
    """
    experiment = ExperimentSettings.coerce(experiment)
    target = experiment.target
    dataset = experiment_dataset(shard_dir, split, experiment, tokenizer)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_samples
    )
    out = SplitArrays()
    n = len(dataset)
    filled = _Filled(n)  # whole-split arrays written in place: no second copy by concatenation
    scores: list[list[np.ndarray]] = []
    attention_sum = None
    for batch in loader:
        out.subjects.extend(batch["subject"])
        filled.put("window_start", np.asarray(batch["window_start"]))
        filled.put("condition", batch["condition"].numpy())
        filled.put("target", batch["target"].numpy())
        if model is not None:
            result = model(
                batch["condition"],
                # text: teacher forcing; point clouds: the coordinates to predict values at
                target=batch["target"] if target in ("text", "point_cloud") else None,
                time_offset=batch.get("time_offset"),
                return_attention=attention,
            )
            if attention:  # (B, heads, n_target, n_condition) -> summed over the batch
                part = result.attention.float().mean(dim=1).sum(dim=0).numpy()
                attention_sum = part if attention_sum is None else attention_sum + part
            values, cat_scores = _prediction_arrays(result.prediction)
            filled.put("prediction", values)
            scores.append(cat_scores)
        filled.advance(len(batch["subject"]))
    dataset.close()
    if not out.subjects:
        return out
    out.window_start = filled.arrays["window_start"].astype(np.int64)
    out.condition = filled.arrays["condition"]
    out.target = filled.arrays["target"]
    if model is not None:
        out.prediction = filled.arrays["prediction"]
        out.categorical_scores = [np.concatenate(col) for col in zip(*scores, strict=True)]
    if attention_sum is not None:
        out.attention = attention_sum / len(out.subjects)
    return out


__all__ = [
    "build_model",
    "collect_split",
    "experiment_dataset",
    "fit_tokenizer",
    "load_experiment_model",
    "read_manifest",
    "SplitArrays",
]
