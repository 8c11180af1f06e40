"""Baselines every model must beat, fitted on training subjects only.

Both follow scikit-learn's ``fit(X, Y)`` / ``predict(X)``. Nothing about the
test subjects reaches ``fit``: the evaluate stage fits on the training split and
predicts the test split.

:class:`GroupMeanBaseline`
    Ignores the condition. For ROI time series it predicts the average training
    series at the same absolute time points: with a shared task paradigm this is
    the group's evoked response, the bar a model that reads the condition must
    clear. For other targets it predicts the mean target (continuous) or the
    most frequent code (categorical).
:class:`RidgeBaseline`
    A linear map from the flattened condition features to the flattened target
    (:class:`sklearn.linear_model.RidgeCV` over a log-spaced alpha grid), with
    inputs and outputs standardised by training statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

DEFAULT_ALPHAS = np.logspace(-3, 6, 19)


def _finite(x, name: str, min_ndim: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < min_ndim or len(arr) == 0:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s) and one row; got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr


def _not_fitted(obj) -> None:
    raise RuntimeError(f"{type(obj).__name__} is not fitted: call fit() first")


class GroupMeanBaseline:
    """Predict what the training group does on average, whatever the condition.

    Parameters
    ----------
    kind : {"time_series", "mean", "majority"}
        ``"time_series"``: targets ``(n, W, R)`` are windows (or whole series)
        starting at ``time_offsets`` volumes from run start; the prediction for
        a window is the average over all training windows of the values at the
        same absolute time points. ``"mean"``: the mean training target, any
        shape ``(n, ...)``. ``"majority"``: the most frequent integer code per
        column of ``(n, ...)`` codes (ties go to the smallest code), e.g.
        categorical tabular columns or token ids per text position.

    Attributes
    ----------
    template_ : ndarray
        ``"time_series"``: ``(n_timepoints, R)`` average over absolute time
        (NaN at volumes no training window reached; predicting them raises);
        otherwise the predicted target, shaped like one training target.
    window_ : int
        ``"time_series"`` only: the window length W the baseline predicts.
    """

    def __init__(self, kind: Literal["time_series", "mean", "majority"] = "time_series"):
        if kind not in ("time_series", "mean", "majority"):
            raise ValueError(f"kind must be 'time_series', 'mean' or 'majority'; got {kind!r}")
        self.kind = kind

    def fit(
        self, X, Y, time_offsets: Sequence[int] | np.ndarray | None = None
    ) -> GroupMeanBaseline:
        """Average the training targets.

        Parameters
        ----------
        X : array_like, shape (n, ...) or None
            Training conditions; only their number is checked against ``Y``.
        Y : ndarray, shape (n, W, R) for ``"time_series"``, else (n, ...)
            Training targets.
        time_offsets : array of int, shape (n,), optional
            ``"time_series"`` only: each window's start in volumes; all 0 (whole
            series aligned at run start) when omitted.

        Returns
        -------
        self
        """
        Y = _finite(Y, "Y")
        if X is not None and len(X) != len(Y):
            raise ValueError(f"X has {len(X)} samples but Y has {len(Y)}")
        if self.kind == "time_series":
            if Y.ndim != 3:
                raise ValueError(f"time-series targets must be shaped (n, W, R); got {Y.shape}")
            offsets = self._offsets(time_offsets, len(Y))
            n_windows, window, n_rois = Y.shape
            length = int(offsets.max()) + window
            total = np.zeros((length, n_rois))
            count = np.zeros(length)
            index = offsets[:, None] + np.arange(window)  # (n, W) absolute time points
            np.add.at(total, index, Y)
            np.add.at(count, index, 1)
            covered = count > 0
            self.template_ = np.full((length, n_rois), np.nan)
            self.template_[covered] = total[covered] / count[covered, None]
            self.covered_ = covered
            self.window_ = window
        elif time_offsets is not None:
            raise ValueError(
                f"time_offsets is only used with kind='time_series', not {self.kind!r}"
            )
        elif self.kind == "mean":
            self.template_ = Y.mean(axis=0)
        else:
            if not np.array_equal(Y, np.round(Y)):
                raise ValueError("kind='majority' needs whole-number category codes in Y")
            codes = Y.astype(np.int64).reshape(len(Y), -1)
            majority = [np.bincount(c - c.min()).argmax() + c.min() for c in codes.T]
            self.template_ = np.asarray(majority, dtype=np.int64).reshape(Y.shape[1:])
        return self

    @staticmethod
    def _offsets(time_offsets, n: int) -> np.ndarray:
        if time_offsets is None:
            return np.zeros(n, dtype=np.int64)
        offsets = np.asarray(time_offsets)
        if offsets.shape != (n,) or not np.issubdtype(offsets.dtype, np.integer):
            raise ValueError(
                f"time_offsets must be integers shaped ({n},); got {offsets.dtype} {offsets.shape}"
            )
        if offsets.min() < 0:
            raise ValueError("time_offsets must be >= 0 (volumes from run start)")
        return offsets.astype(np.int64)

    def predict(self, X, time_offsets: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The group prediction for each test sample.

        Parameters
        ----------
        X : array_like, shape (n, ...) or int
            Test conditions (only their number is used) or the number of samples.
        time_offsets : array of int, shape (n,), optional
            ``"time_series"`` only: the start of each test window (0 when omitted).

        Returns
        -------
        ndarray
            ``(n, W, R)`` for ``"time_series"``, else ``(n, ...)`` shaped like the
            training targets.

        Raises
        ------
        ValueError
            When a test window reaches time points no training window covered.
        """
        if not hasattr(self, "template_"):
            _not_fitted(self)
        if X is None:
            raise ValueError("pass the test conditions (or their number) to predict")
        n = int(X) if np.ndim(X) == 0 else len(X)
        if self.kind != "time_series":
            if time_offsets is not None:
                raise ValueError(
                    f"time_offsets is only used with kind='time_series', not {self.kind!r}"
                )
            return np.repeat(self.template_[None], n, axis=0)
        offsets = self._offsets(time_offsets, n)
        index = offsets[:, None] + np.arange(self.window_)  # (n, W) absolute time points
        if index.max() >= len(self.template_) or not self.covered_[index].all():
            raise ValueError(
                "some test windows reach time points no training window covered "
                f"(training covers {int(self.covered_.sum())} of {len(self.covered_)} volumes)"
            )
        return self.template_[index]


class RidgeBaseline:
    """Cross-validated ridge regression from condition features to the target.

    Parameters
    ----------
    alphas : array_like of float
        Regularisation strengths searched by efficient leave-one-out CV
        (``RidgeCV``'s generalised cross-validation); log-spaced 1e-3 … 1e6 by default.
    categorical_columns : sequence of int
        For 2-D inputs ``(n, n_columns)`` (tabular conditions): columns holding
        category codes, one-hot encoded (unseen test categories → all zeros).
        The remaining columns are standardised.
    pca : bool or "auto"
        Project standardised inputs on principal components fitted on the
        training samples. ``"auto"`` does so when features outnumber samples
        tenfold (e.g. image voxels). With all ``n - 1`` components (the default
        ``n_components=None``) ridge predictions are unchanged, since the
        ridge solution lies in the span of the centred training samples; it
        only saves memory and time. Fewer components regularise further.
    n_components : int, optional
        Number of principal components (capped at ``n_train - 1``).

    Attributes
    ----------
    alpha_ : float
        The chosen regularisation strength.
    """

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
        categorical_columns: Sequence[int] = (),
        pca: bool | Literal["auto"] = "auto",
        n_components: int | None = None,
    ):
        alphas = np.asarray(alphas, dtype=np.float64)
        if alphas.ndim != 1 or alphas.size == 0 or not (alphas > 0).all():
            raise ValueError("alphas must be a non-empty 1-D array of positive numbers")
        if pca not in (True, False, "auto"):
            raise ValueError(f"pca must be True, False or 'auto'; got {pca!r}")
        if n_components is not None and n_components < 1:
            raise ValueError(f"n_components must be >= 1; got {n_components}")
        self.alphas = alphas
        self.categorical_columns = tuple(int(c) for c in categorical_columns)
        self.pca = pca
        self.n_components = n_components

    def _inputs(self, X: np.ndarray) -> ColumnTransformer | StandardScaler:
        """Standardise numeric columns, one-hot encode categorical ones (X is 2-D)."""
        if not self.categorical_columns:
            return StandardScaler()
        n_columns = X.shape[1]
        bad = [c for c in self.categorical_columns if not 0 <= c < n_columns]
        if bad:
            raise ValueError(f"categorical_columns {bad} do not exist among {n_columns} columns")
        numeric = [c for c in range(n_columns) if c not in self.categorical_columns]
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        return ColumnTransformer(
            [
                ("numeric", StandardScaler(), numeric),
                ("categorical", encoder, list(self.categorical_columns)),
            ]
        )

    def fit(self, X, Y) -> RidgeBaseline:
        """Fit on training conditions and targets.

        Parameters
        ----------
        X : ndarray, shape (n, ...)
            Condition features per training sample (e.g. images ``(n, 1, D, H, W)``,
            structural features ``(n, R, F)``, table rows ``(n, n_columns)``);
            flattened to ``(n, n_features)``.
        Y : ndarray, shape (n, ...)
            Targets (e.g. whole ROI series ``(n, T, R)``); flattened for the fit
            and reshaped back by :meth:`predict`.

        Returns
        -------
        self
        """
        X, Y = _finite(X, "X"), _finite(Y, "Y")
        if len(X) != len(Y):
            raise ValueError(f"X has {len(X)} samples but Y has {len(Y)}")
        if len(X) < 3:
            raise ValueError(
                f"ridge with cross-validated alpha needs at least 3 samples; got {len(X)}"
            )
        self.input_shape_, self.target_shape_ = X.shape[1:], Y.shape[1:]
        X2, Y2 = X.reshape(len(X), -1), Y.reshape(len(Y), -1)
        if self.categorical_columns and X.ndim != 2:
            raise ValueError(f"categorical_columns need 2-D inputs (n, n_columns); got {X.shape}")
        steps = [("inputs", self._inputs(X2))]
        use_pca = self.pca is True or (self.pca == "auto" and X2.shape[1] > 10 * len(X2))
        if use_pca:
            cap = len(X2) - 1
            steps.append(
                ("pca", PCA(n_components=min(self.n_components or cap, cap), svd_solver="full"))
            )
        steps.append(("ridge", RidgeCV(alphas=self.alphas)))
        self.model_ = TransformedTargetRegressor(
            regressor=Pipeline(steps), transformer=StandardScaler(), check_inverse=False
        )
        self.model_.fit(X2, Y2)
        self.alpha_ = float(self.model_.regressor_.named_steps["ridge"].alpha_)
        return self

    def predict(self, X) -> np.ndarray:
        """Predict targets for new (test) conditions.

        Parameters
        ----------
        X : ndarray, shape (n, ...)
            Shaped like the training conditions after the first axis.

        Returns
        -------
        ndarray, shape (n, ...)
            Shaped like the training targets after the first axis.
        """
        if not hasattr(self, "model_"):
            _not_fitted(self)
        X = _finite(X, "X")
        if X.shape[1:] != self.input_shape_:
            raise ValueError(
                f"X samples are shaped {X.shape[1:]}, but the baseline was fitted on {self.input_shape_}"
            )
        pred = self.model_.predict(X.reshape(len(X), -1))
        return np.asarray(pred).reshape((len(X), *self.target_shape_))
