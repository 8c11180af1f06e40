"""Scores for image, text and tabular targets.

ROI time-series scores live in :mod:`modalmerge.evaluation.metrics`. As there,
inputs are checked first (shape mismatch or NaN/inf → ``ValueError``), the
math runs in float64, and no function returns NaN.

SSIM uses :func:`skimage.metrics.structural_similarity` with the settings of
Wang et al. (2004): an 11-tap Gaussian window (sigma 1.5), population
covariance, K1 = 0.01, K2 = 0.03.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import log_softmax
from sklearn.metrics import r2_score

from modalmerge.evaluation.metrics import check_pair

# --------------------------------------------------------------------- images


def _check_images(pred, true, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    pred, true = check_pair(pred, true, (4, 5), "(n, C, H, W) or (n, C, D, H, W)")
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive finite number; got {data_range}")
    return pred, true


def ssim(
    pred: np.ndarray, true: np.ndarray, *, data_range: float, sigma: float = 1.5
) -> np.ndarray:
    """Structural similarity of each predicted image to its true image.

    Parameters
    ----------
    pred, true : ndarray, shape (n, C, H, W) or (n, C, D, H, W)
        Predicted and true images; SSIM is computed over the spatial axes and
        averaged over channels.
    data_range : float
        The intensity range the images can span (max - min of the scale, e.g.
        1.0 for images in [0, 1]); it sets SSIM's stabilising constants.
    sigma : float
        Width of the Gaussian window in voxels. The window spans
        ``2 * int(3.5 * sigma + 0.5) + 1`` voxels (11 for 1.5) and must fit in
        the smallest spatial side.

    Returns
    -------
    ndarray, shape (n,)
        SSIM per image, at most 1 (identical images).
    """
    from skimage.metrics import structural_similarity

    pred, true = _check_images(pred, true, data_range)
    window = 2 * int(3.5 * sigma + 0.5) + 1
    smallest = min(pred.shape[2:])
    if window > smallest:
        raise ValueError(
            f"the SSIM window ({window} voxels for sigma={sigma}) exceeds the smallest "
            f"spatial side ({smallest}); pass a smaller sigma"
        )
    return np.array(
        [
            structural_similarity(
                p,
                t,
                data_range=data_range,
                channel_axis=0,
                gaussian_weights=True,
                sigma=sigma,
                use_sample_covariance=False,
            )
            for p, t in zip(pred, true, strict=True)
        ]
    )


def psnr(pred: np.ndarray, true: np.ndarray, *, data_range: float) -> np.ndarray:
    """Peak signal-to-noise ratio of each predicted image, in decibels.

    ``PSNR = 10 log10(data_range² / MSE)`` with the MSE over all channels and voxels.

    Parameters
    ----------
    pred, true : ndarray, shape (n, C, H, W) or (n, C, D, H, W)
    data_range : float
        The intensity range the images can span (the "peak").

    Returns
    -------
    ndarray, shape (n,)
        PSNR in dB; ``inf`` for an image predicted exactly.
    """
    pred, true = _check_images(pred, true, data_range)
    err = ((pred - true) ** 2).reshape(len(pred), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(err == 0, np.inf, 10.0 * np.log10(data_range**2 / err))


def image_metrics(
    pred: np.ndarray, true: np.ndarray, *, data_range: float, sigma: float = 1.5
) -> dict[str, dict]:
    """Mean SSIM, PSNR and MSE over images, in the ``{"scores": ...}`` form of ``metrics.json``.

    Parameters
    ----------
    pred, true : ndarray, shape (n, C, H, W) or (n, C, D, H, W)
    data_range : float
        The intensity range the images can span.
    sigma : float
        SSIM's Gaussian window width in voxels (see :func:`ssim`).

    Returns
    -------
    dict
        ``{"scores": {"ssim": float, "psnr": float (dB, may be inf), "mse": float},
        "per_image": {"ssim": [n], "psnr": [n], "mse": [n]}}``; the scores are
        the means of the per-image lists.
    """
    pred, true = _check_images(pred, true, data_range)
    per_image = {
        "ssim": ssim(pred, true, data_range=data_range, sigma=sigma),
        "psnr": psnr(pred, true, data_range=data_range),
        "mse": ((pred - true) ** 2).reshape(len(pred), -1).mean(axis=1),
    }
    return {
        "scores": {k: float(v.mean()) for k, v in per_image.items()},
        "per_image": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in per_image.items()},
    }


# ----------------------------------------------------------------------- text


def _check_ids(ids, name: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must be integer token ids shaped (n, L); got {arr.dtype} {arr.shape}"
        )
    return arr


def _scored(true_ids: np.ndarray, pad_id: int, bos_id: int | None) -> np.ndarray:
    scored = true_ids != pad_id
    if bos_id is not None:
        scored &= true_ids != bos_id
    if not scored.any():
        raise ValueError("true_ids holds only padding: there is nothing to score")
    return scored


def token_accuracy(
    pred_ids: np.ndarray, true_ids: np.ndarray, pad_id: int = 0, *, bos_id: int | None = None
) -> float:
    """Fraction of non-padding positions where the predicted token is the true one.

    Parameters
    ----------
    pred_ids, true_ids : ndarray of int, shape (n, L)
        Predicted (e.g. ``logits.argmax(-1)``) and true token ids, aligned by position.
    pad_id : int
        Positions where ``true_ids == pad_id`` are not scored.
    bos_id : int, optional
        Positions where ``true_ids == bos_id`` are not scored either: pass the
        tokenizer's ``BOS_ID`` for the text decoder, which is given ``bos`` at
        position 0 rather than predicting it.

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    pred_ids, true_ids = _check_ids(pred_ids, "pred_ids"), _check_ids(true_ids, "true_ids")
    if pred_ids.shape != true_ids.shape:
        raise ValueError(f"pred_ids shape {pred_ids.shape} differs from true_ids {true_ids.shape}")
    scored = _scored(true_ids, pad_id, bos_id)
    return float((pred_ids[scored] == true_ids[scored]).mean())


def token_nll(
    logits: np.ndarray, true_ids: np.ndarray, pad_id: int = 0, *, bos_id: int | None = None
) -> float:
    """Mean negative log-likelihood of the true tokens, in nats per non-padding token.

    Parameters
    ----------
    logits : ndarray, shape (n, L, V)
        Unnormalised scores; ``logits[:, i]`` predicts ``true_ids[:, i]``.
    true_ids : ndarray of int, shape (n, L)
    pad_id : int
        Positions where ``true_ids == pad_id`` are not scored.
    bos_id : int, optional
        Positions where ``true_ids == bos_id`` are not scored either (see
        :func:`token_accuracy`).
    """
    true_ids = _check_ids(true_ids, "true_ids")
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 3 or logits.shape[:2] != true_ids.shape:
        raise ValueError(
            f"logits must be shaped (n, L, V) = {true_ids.shape} + (V,); got {logits.shape}"
        )
    if not np.isfinite(logits).all():
        raise ValueError("logits hold NaN or infinite values")
    if true_ids.min() < 0 or true_ids.max() >= logits.shape[2]:
        raise ValueError(f"true_ids must lie in [0, {logits.shape[2]}) (the vocabulary)")
    scored = _scored(true_ids, pad_id, bos_id)
    logp = np.take_along_axis(log_softmax(logits, axis=-1), true_ids[..., None], axis=-1)[..., 0]
    return float(-logp[scored].mean())


def perplexity(
    logits_or_nll: np.ndarray | float, true_ids: np.ndarray | None = None, pad_id: int = 0
) -> float:
    """Perplexity: ``exp(mean NLL per token)``.

    Parameters
    ----------
    logits_or_nll : ndarray (n, L, V) or float
        Either logits (then ``true_ids`` is required and the NLL comes from
        :func:`token_nll`) or an already averaged NLL in nats per token.
    true_ids : ndarray of int, shape (n, L), optional
    pad_id : int

    Returns
    -------
    float
        At least 1; ``V`` for a uniform guess over a vocabulary of ``V`` tokens.
    """
    if np.ndim(logits_or_nll) == 0:
        if true_ids is not None:
            raise ValueError("true_ids is only used with logits, not with a mean NLL")
        nll = float(logits_or_nll)
        if not np.isfinite(nll) or nll < 0:
            raise ValueError(f"a mean NLL must be a finite number >= 0; got {nll}")
    else:
        if true_ids is None:
            raise ValueError("perplexity from logits needs true_ids")
        nll = token_nll(np.asarray(logits_or_nll), true_ids, pad_id)
    return float(np.exp(nll))


def text_metrics(
    logits: np.ndarray, true_ids: np.ndarray, pad_id: int = 0, *, bos_id: int | None = None
) -> dict[str, dict]:
    """Token accuracy and perplexity from logits ``(n, L, V)``, for ``metrics.json``.

    Padding, and ``bos`` when ``bos_id`` is given, are not scored (see
    :func:`token_accuracy`).

    Returns
    -------
    dict
        ``{"scores": {"token_accuracy": float, "perplexity": float}}``.
    """
    nll = token_nll(logits, true_ids, pad_id, bos_id=bos_id)
    pred_ids = np.asarray(logits).argmax(axis=-1)
    return {
        "scores": {
            "token_accuracy": token_accuracy(pred_ids, true_ids, pad_id, bos_id=bos_id),
            "perplexity": perplexity(nll),
        }
    }


# -------------------------------------------------------------------- tabular


def numeric_r2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """R² per numeric column over subjects (scikit-learn's ``r2_score``).

    Parameters
    ----------
    pred, true : ndarray, shape (n, n_numeric)
        At least 2 rows.

    Returns
    -------
    ndarray, shape (n_numeric,)
        A constant true column gives 1 if predicted exactly, else 0 (``force_finite``).
    """
    pred, true = check_pair(pred, true, 2, "(n, n_numeric)")
    if len(true) < 2:
        raise ValueError("R² needs at least 2 rows")
    return np.asarray(r2_score(true, pred, multioutput="raw_values", force_finite=True))


def mae(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean absolute error per numeric column, in the column's units.

    Parameters
    ----------
    pred, true : ndarray, shape (n, n_numeric)

    Returns
    -------
    ndarray, shape (n_numeric,)
    """
    pred, true = check_pair(pred, true, 2, "(n, n_numeric)")
    return np.abs(pred - true).mean(axis=0)


def categorical_accuracy(
    pred: np.ndarray | Sequence[np.ndarray], true_codes: np.ndarray
) -> np.ndarray:
    """Accuracy per categorical column.

    Parameters
    ----------
    pred : ndarray (n, k) of codes, or a list of k score arrays (n, cardinality_i)
        Predicted category codes, or per-column class scores (logits or
        probabilities), whose argmax is the predicted code.
    true_codes : ndarray, shape (n, k)
        True integer category codes (float arrays holding whole numbers are accepted).

    Returns
    -------
    ndarray, shape (k,)
        Accuracies in [0, 1].
    """
    true_codes = np.asarray(true_codes)
    if true_codes.ndim != 2 or true_codes.size == 0:
        raise ValueError(f"true_codes must be shaped (n, k); got {true_codes.shape}")
    if isinstance(pred, (list, tuple)):
        if len(pred) != true_codes.shape[1]:
            raise ValueError(f"got {len(pred)} score arrays for {true_codes.shape[1]} columns")
        for i, scores in enumerate(pred):
            if not np.isfinite(scores).all():
                raise ValueError(f"scores of column {i} hold NaN or infinite values")
            if np.ndim(scores) != 2 or len(scores) != len(true_codes):
                raise ValueError(
                    f"scores of column {i} must be shaped (n={len(true_codes)}, cardinality)"
                )
        pred = np.stack([np.asarray(s).argmax(axis=1) for s in pred], axis=1)
    pred = np.asarray(pred)
    if pred.shape != true_codes.shape:
        raise ValueError(
            f"pred codes shape {pred.shape} differs from true_codes {true_codes.shape}"
        )
    for name, arr in (("pred", pred), ("true_codes", true_codes)):
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name} must hold whole-number category codes")
    return (pred == true_codes).mean(axis=0)


def tabular_metrics(
    pred_numeric: np.ndarray | None,
    true_numeric: np.ndarray | None,
    pred_categorical: np.ndarray | Sequence[np.ndarray] | None = None,
    true_categorical: np.ndarray | None = None,
) -> dict[str, dict]:
    """Numeric R² and MAE and categorical accuracy, averaged over columns.

    Either part may be None (a table without numeric or categorical columns).

    Returns
    -------
    dict
        ``{"scores": {"r2": .., "mae": .., "accuracy": ..}}`` with the keys
        whose parts were given.
    """
    scores: dict[str, float] = {}
    if (pred_numeric is None) != (true_numeric is None):
        raise ValueError("give both pred_numeric and true_numeric, or neither")
    if (pred_categorical is None) != (true_categorical is None):
        raise ValueError("give both pred_categorical and true_categorical, or neither")
    if pred_numeric is not None:
        scores["r2"] = float(numeric_r2(pred_numeric, true_numeric).mean())
        scores["mae"] = float(mae(pred_numeric, true_numeric).mean())
    if pred_categorical is not None:
        scores["accuracy"] = float(categorical_accuracy(pred_categorical, true_categorical).mean())
    if not scores:
        raise ValueError("nothing to score: no numeric and no categorical columns given")
    return {"scores": scores}
