"""``Visualizer``: draw what a model attends to, and its predictions against the truth.

::

    fig = Visualizer.plot_attention(model, structural_mri)            # image condition
    fig = Visualizer.plot_attention(model, roi_window, target_queries=[3, range(10, 20)])
    save_figure(fig, "figures/exp/attention.png")

Figures are Agg-backed and never registered with ``pyplot``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from modalmerge.viz._common import AXIS_NAMES, new_figure, orthogonal_slice, set_tick_labels
from modalmerge.viz.attention import (
    QuerySelection,
    attention_peak,
    project_to_image,
    query_groups,
    select_heads,
)
from modalmerge.viz.predictions import (
    plot_image_prediction,
    plot_tabular_prediction,
    plot_text_prediction,
    plot_timeseries_prediction,
)

#: Image overlays draw this many evenly spaced target queries unless told otherwise.
DEFAULT_IMAGE_QUERIES = 3


def _condition_provenance(model, sample_shape: tuple[int, ...] | None):
    """The model's condition-token provenance, for ``sample_shape`` when the model takes one."""
    fn = getattr(model, "condition_provenance", None)
    if fn is None:
        raise ValueError(
            f"{type(model).__name__} has no condition_provenance(); plot_attention needs a "
            "MultiModalModel (or a model following its contract)"
        )
    if sample_shape is None or not inspect.signature(fn).parameters:
        return fn()  # a model whose provenance does not depend on the input shape
    return fn(sample_shape)


def _batch_condition(x, provenance, tokenizer=None) -> torch.Tensor:
    """Bring one sample ``x`` to a batch of one shaped like the model's condition input."""
    kind = provenance.kind
    if isinstance(x, str):
        if kind != "word" or tokenizer is None or not hasattr(tokenizer, "encode"):
            raise ValueError(
                f"x is a string, but the model's condition is {kind} tokens without a tokenizer"
            )
        length = provenance.input_shape[0] if provenance.input_shape else provenance.n_tokens
        x = tokenizer.encode(x, length)
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"x must be a numeric array or tensor, got {type(x).__name__}"
            ) from err
    if kind == "word":
        if t.is_floating_point():
            raise ValueError(f"text condition must hold integer token ids, got dtype {t.dtype}")
        t = t.long()
    else:
        t = t.float()
    sample_ndim = len(provenance.input_shape) if provenance.input_shape is not None else None
    if sample_ndim is None:  # fall back on the modality's layout
        sample_ndim = {"time": 2, "roi": 2, "word": 1, "column": 1}.get(kind)
        if kind == "image_grid":
            sample_ndim = len(provenance.grid_shape) + 1
    if kind == "image_grid" and t.ndim == sample_ndim - 1:  # (D, H, W): one channel
        t = t[None]
    if t.ndim == sample_ndim:
        t = t[None]
    if t.ndim != sample_ndim + 1 or t.shape[0] != 1:
        expected = provenance.input_shape or f"a {sample_ndim}-D sample"
        raise ValueError(
            f"x must be one sample of the model's {kind} condition, shaped like {expected} "
            f"(a leading batch axis of 1 is allowed), got shape {tuple(t.shape)}"
        )
    if provenance.input_shape is not None and kind != "image_grid":
        fixed = provenance.input_shape[-1] if kind in ("time", "roi") else None
        if fixed is not None and t.shape[-1] != fixed:
            raise ValueError(f"x has {t.shape[-1]} channels, the model expects {fixed}")
    if provenance.input_shape is not None and kind == "image_grid":
        if t.shape[1] != provenance.input_shape[0]:
            raise ValueError(
                f"x has {t.shape[1]} image channels, the model expects {provenance.input_shape[0]}"
            )
    return t


def _is_names(labels) -> bool:
    return isinstance(labels, np.ndarray) or (
        labels is not None and not isinstance(labels, str) and isinstance(labels, Sequence)
    )


def _token_labels(
    kind: str, n: int, x: torch.Tensor, labels, tokenizer, provenance, time_offset
) -> list[str]:
    """Names of the condition tokens for a heatmap's columns."""
    if _is_names(labels):
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} condition tokens")
        return [str(v) for v in labels]
    if kind == "word":
        ids = x[0].tolist()
        if tokenizer is not None and hasattr(tokenizer, "itos"):  # modalmerge.models.text.Tokenizer
            vocab = tokenizer.itos
            return [str(vocab[i]) if 0 <= i < len(vocab) else f"<{i}>" for i in ids]
        if tokenizer is not None and hasattr(tokenizer, "id_to_token"):
            return [str(tokenizer.id_to_token(int(i))) for i in ids]
        if tokenizer is not None and hasattr(tokenizer, "decode"):
            return [str(tokenizer.decode([int(i)])) or f"<{i}>" for i in ids]
        if tokenizer is not None:
            raise ValueError("labels must be a list of names or a tokenizer with decode()")
        return [f"#{i}" for i in ids]
    if labels is not None:
        raise ValueError(f"labels must be a sequence of {n} names, got {type(labels).__name__}")
    return _provenance_labels(provenance, time_offset)


def _provenance_labels(provenance, time_offset: int | None) -> list[str]:
    """Token names from a provenance: its labels, else time points, grid cells or indices."""
    n = provenance.n_tokens
    if provenance.labels is not None:
        return [str(v) for v in provenance.labels]
    if provenance.kind == "time":
        start = int(time_offset) if time_offset is not None else 0
        return [f"t={start + i}" for i in range(n)]
    if provenance.kind == "image_grid" and provenance.grid_shape:
        cells = np.stack(np.unravel_index(np.arange(n), provenance.grid_shape), axis=1)
        return ["block (" + ", ".join(str(int(c)) for c in cell) + ")" for cell in cells]
    prefix = {"roi": "ROI ", "column": "column ", "word": "position ", "region": "region "}.get(
        provenance.kind, ""
    )
    return [f"{prefix}{i}" for i in range(n)]


def _default_target_labels(model, n_target: int, time_offset: int | None) -> list[str] | None:
    """Names of the target queries from ``model.target_provenance()`` when it has one."""
    fn = getattr(model, "target_provenance", None)
    if fn is None:
        return None
    provenance = fn()
    if provenance.n_tokens != n_target:
        return None
    return _provenance_labels(provenance, time_offset)


class Visualizer:
    """Figures of a model's attention and of predictions against the truth.

    All methods are static: ``Visualizer.plot_attention(model, x)``. Each
    returns an Agg-backed :class:`~matplotlib.figure.Figure`; save it with
    :func:`modalmerge.viz.figures.save_figure`.
    """

    plot_timeseries_prediction = staticmethod(plot_timeseries_prediction)
    plot_image_prediction = staticmethod(plot_image_prediction)
    plot_tabular_prediction = staticmethod(plot_tabular_prediction)
    plot_text_prediction = staticmethod(plot_text_prediction)

    @staticmethod
    @torch.no_grad()
    def plot_attention(
        model: torch.nn.Module,
        x,
        target_queries: QuerySelection | Iterable[QuerySelection] | None = None,
        head: int | None = None,
        labels=None,
        time_offset: int | None = None,
        target_labels: Sequence[str] | None = None,
        target=None,
    ) -> Figure:
        """Draw where a model's target queries attend in one condition sample.

        Image conditions: each selected query's attention over the feature grid
        is upsampled (trilinear/bilinear) to the image and overlaid on it, with
        three orthogonal slices through its peak (3-D) or one panel (2-D).
        Time series, text and table conditions: a heatmap of target queries by
        condition tokens, labelled with time points, ROI names, words or columns.

        Parameters
        ----------
        model : torch.nn.Module
            A model with ``forward(condition, time_offset=..., return_attention=True)``
            returning ``(prediction, attention)`` where attention is
            ``(B, heads, n_target, n_condition)``, and ``condition_provenance(input_shape)``.
        x : array or tensor
            One condition sample: image ``(C, D, H, W)``/``(D, H, W)`` or ``(C, H, W)``,
            time series ``(T, channels)``, text ids ``(L,)`` (or a string, encoded
            with the tokenizer), table row ``(n_columns,)``; a leading batch axis
            of 1 is allowed.
        target_queries : int, slice, range, or a list of those, optional
            Queries to draw; a slice/range is averaged into one row (e.g. a time
            window). Default: three evenly spaced queries for images, all for heatmaps.
        head : int, optional
            Attention head to draw; default the mean over heads.
        labels : sequence of str or tokenizer, optional
            Names of the condition tokens (ROI names, column names, words), or for
            text a tokenizer (:class:`modalmerge.models.text.Tokenizer`, or any
            object with ``id_to_token`` or ``decode``) to turn ids into words.
            Default: the model's own tokenizer, then the provenance's labels.
        time_offset : int, optional
            Start of the window in samples: passed to the model and added to time labels.
        target_labels : sequence of str, optional
            Names of all target queries (e.g. target ROI names); default from
            ``model.target_provenance()`` when the model has it, else ``query i``.
        target : array or tensor, optional
            One target sample, passed to the model: a point cloud ``(N, 3 + F)`` whose
            points the ``values`` decoder predicts at (its queries are built from them).

        Returns
        -------
        matplotlib.figure.Figure
            Images: one row per query group with 3 slice panels (3-D) or 1 (2-D)
            and a colour bar per row. Otherwise one heatmap axis and its colour bar.

        Raises
        ------
        ValueError
            When the model returns no attention (e.g. ``film`` or ``concat``
            conditioning), ``x`` has the wrong shape, or a selection is out of range.
        """
        # Over 60 lines: one entry point for every condition kind (image overlay or heatmap) and its checks.
        tokenizer = labels if not _is_names(labels) and labels is not None else None
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        hint = _condition_provenance(model, None)
        xb = _batch_condition(x, hint, tokenizer)
        prov = _condition_provenance(model, tuple(xb.shape[1:]))
        was_training = model.training
        model.eval()
        try:
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            offset = (
                None if time_offset is None else torch.tensor([int(time_offset)], device=device)
            )
            try:
                given = None if target is None else torch.as_tensor(target)[None].to(device)
                kwargs = {} if given is None else {"target": given}
                out = model(xb.to(device), time_offset=offset, return_attention=True, **kwargs)
            except (RuntimeError, IndexError) as err:
                raise ValueError(
                    f"the model could not run on x of shape {tuple(xb.shape)}: {err}"
                ) from err
        finally:
            model.train(was_training)
        attention = out.attention if hasattr(out, "attention") else out[1]
        if attention is None:
            method = getattr(model, "conditioning_method", "")
            raise ValueError(
                f"the model returns no attention weights (conditioning {method!r}); "
                "plot_attention needs a method with weights (cross_attention, spatial_mix)"
            )
        att = select_heads(attention, head)  # (n_target, n_condition)
        if att.shape[1] != prov.n_tokens:
            raise ValueError(
                f"attention covers {att.shape[1]} condition tokens, provenance reports {prov.n_tokens}"
            )
        head_note = f"head {head}" if head is not None else f"mean of {attention.shape[-3]} heads"
        if target_labels is None:
            target_labels = _default_target_labels(model, att.shape[0], time_offset)
        if prov.kind == "image_grid":
            groups = query_groups(
                target_queries, att.shape[0], DEFAULT_IMAGE_QUERIES, target_labels
            )
            return _image_overlay(att, groups, prov.grid_shape, xb[0, 0].cpu().numpy(), head_note)
        groups = query_groups(target_queries, att.shape[0], None, target_labels)
        columns = _token_labels(prov.kind, att.shape[1], xb, labels, tokenizer, prov, time_offset)
        rows = np.stack([att[idx].mean(axis=0) for _, idx in groups])
        keep = np.arange(att.shape[1])
        if prov.kind == "word":  # padding positions carry no word
            keep = np.flatnonzero(xb[0].cpu().numpy() != 0)
            keep = keep if keep.size else np.arange(att.shape[1])
        return _heatmap(
            rows[:, keep], [g for g, _ in groups], [columns[i] for i in keep], prov.kind, head_note
        )


def _image_overlay(att, groups, grid_shape, image: np.ndarray, head_note: str) -> Figure:
    """One row per query group: attention upsampled onto ``image`` (2-D or 3-D)."""
    spatial = image.ndim
    n_panels = 3 if spatial == 3 else 1
    fig = new_figure(3.3 * n_panels + 1.0, 3.0 * len(groups) + 0.6, layout="constrained")
    axes = fig.subplots(len(groups), n_panels, squeeze=False)
    for row, (name, idx) in zip(axes, groups, strict=True):
        volume = project_to_image(att[idx].mean(axis=0), grid_shape, image.shape)
        peak = attention_peak(volume)
        vmax = float(volume.max()) or 1.0
        for p, ax in enumerate(row):
            if spatial == 3:
                anat, over = (orthogonal_slice(v, p, peak[p]) for v in (image, volume))
                where = f"{AXIS_NAMES[p]}={peak[p]}"
            else:
                anat, over = image.T, volume.T
                where = f"peak ({peak[0]}, {peak[1]})"
            ax.imshow(anat, cmap="gray", origin="lower")
            shown = ax.imshow(over, cmap="hot", alpha=0.55, vmin=0.0, vmax=vmax, origin="lower")
            ax.set_title(f"{name}: {where}", fontsize="medium")
            ax.set_axis_off()
        fig.colorbar(shown, ax=list(row), shrink=0.8, label="attention")
    fig.suptitle(f"attention on the image ({head_note})")
    return fig


def _heatmap(rows: np.ndarray, row_labels, col_labels, kind: str, head_note: str) -> Figure:
    """Heatmap of attention, query groups by condition tokens."""
    n_rows, n_cols = rows.shape
    fig = new_figure(
        min(2.5 + 0.3 * n_cols, 16.0), min(1.8 + 0.3 * n_rows, 12.0), layout="constrained"
    )
    ax = fig.subplots()
    shown = ax.imshow(rows, aspect="auto", cmap="viridis", interpolation="nearest")
    set_tick_labels(ax, col_labels, "x")
    set_tick_labels(ax, row_labels, "y")
    token = {
        "time": "time point",
        "roi": "ROI",
        "word": "word",
        "column": "column",
        "region": "region",
    }.get(  # fmt: skip
        kind, "token"
    )
    ax.set_xlabel(f"condition {token}")
    ax.set_ylabel("target query")
    ax.set_title(f"attention over condition {token}s ({head_note})")
    fig.colorbar(shown, ax=ax, label="attention weight")
    return fig
