"""Baselines fitted by streaming over the training split, so that memory does not grow with it.

The in-memory baselines (:mod:`modalmerge.evaluation.baselines`) fit on every training
window at once; at 512 tiny subjects that is 201 MiB of conditions and targets before the
fits copy them to float64 (docs/benchmarks.md, "Evaluate's memory"). Here the training split
comes as a *stream*: a function that, each time it is called, reads the split again and
yields one :class:`SubjectWindows` per training subject (all its windows). Every fit makes a
few passes over it and holds only running sums and one block of rows.

:func:`running_group_mean`
    The group mean of :class:`~modalmerge.evaluation.baselines.GroupMeanBaseline`
    (``"time_series"``) from running sums: the same additions in the same order, so the
    same template to the last bit.
:class:`StreamingRidge`
    The ridge baseline of :class:`~modalmerge.evaluation.baselines.RidgeBaseline`
    (``StandardScaler`` on inputs and targets, PCA of wide inputs, ``RidgeCV``'s efficient
    leave-one-out choice of alpha) from accumulated statistics: means and variances merged
    block by block (Chan et al.'s pairwise update), the centred, standardised design's
    singular value decomposition from its Gram matrix (features x features when inputs are
    narrow) or its kernel matrix (rows x rows, when ``pca`` applies: the top
    ``n_components`` eigenvectors of the kernel are the PCA scores), the targets' projection
    on it, and a last pass for the leave-one-out residuals of every alpha, which are those of
    sklearn's ``_RidgeGCV``: ``(y_i - yhat_i) / (1 - h_ii)`` with the intercept unpenalised.
    The same model as the in-memory one, so predictions agree to floating-point rounding
    (tests/test_evaluation_streaming.py: <= 1e-8 relative); not to the last bit, which is
    why the evaluate stage keeps the in-memory fit when the training split is small
    (``evaluate.in_memory_mb``, :class:`~modalmerge.settings.EvaluateSettings`).

Why by hand: scikit-learn's incremental estimators (``IncrementalPCA``, ``SGDRegressor``)
give other answers than the exact fit they would replace (an incremental PCA is an
approximation that depends on the batch order; SGD has no efficient leave-one-out), and no
maintained package accumulates a ridge with its generalised cross-validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from modalmerge.evaluation.baselines import GroupMeanBaseline

__all__ = [
    "StreamingRidge",
    "SubjectWindows",
    "TrainStream",
    "running_group_mean",
    "subject_groups",
]

#: float64 bytes a block of rows (inputs and targets) may hold in :class:`StreamingRidge`
BLOCK_BYTES = 8 * 2**20


@dataclass(frozen=True)
class SubjectWindows:
    """One training subject's windows, as the evaluate stage reads them.

    Attributes
    ----------
    subject : str
    window_start : ndarray of int, (n,)
    features : ndarray (n, n_features)
        The ridge features of each window's condition
        (:func:`modalmerge.evaluation.scoring.condition_features`).
    target : ndarray (n, W, R)
    condition : ndarray (n, ...) or None
        The raw condition (time-series conditions: ``(n, W, R_condition)``).
    parcel : ndarray (n_parcel_features,) or None
        The subject's parcel structural features, flattened (image conditions).
    """

    subject: str
    window_start: np.ndarray
    features: np.ndarray
    target: np.ndarray
    condition: np.ndarray | None = None
    parcel: np.ndarray | None = None


#: called once per pass: the training subjects, in the same order every time
TrainStream = Callable[[], Iterable[SubjectWindows]]


def subject_groups(
    batches: Iterable[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]], where: str = "split"
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Group consecutive batches ``(subjects, window_start, condition, target)`` into one
    ``(subject, window_start, condition, target)`` per subject; only one subject's rows are
    held at a time.

    Raises
    ------
    ValueError
        A subject's rows are not contiguous (they come back after another subject's).
    """
    done: set[str] = set()
    current, parts = None, []

    def flush():
        starts, conds, targets = zip(*parts, strict=True)
        return current, np.concatenate(starts), np.concatenate(conds), np.concatenate(targets)

    for subjects, starts, conds, targets in batches:
        subjects = list(subjects)
        begin = 0
        for i in range(1, len(subjects) + 1):
            if i < len(subjects) and subjects[i] == subjects[begin]:
                continue
            subject = subjects[begin]
            if subject != current:
                if current is not None:
                    yield flush()
                    done.add(current)
                if subject in done:
                    raise ValueError(f"the {where}'s samples of {subject} are not contiguous")
                current, parts = subject, []
            parts.append((starts[begin:i], conds[begin:i], targets[begin:i]))
            begin = i
    if current is not None:
        yield flush()


def running_group_mean(stream: TrainStream, by_time: bool) -> GroupMeanBaseline:
    """:class:`~modalmerge.evaluation.baselines.GroupMeanBaseline` ``("time_series")`` fitted
    on every training window of ``stream`` without holding them: at the same absolute
    volumes (``window_start``), or with ``by_time`` the mean window (all offsets 0)."""
    total = count = None
    window = None
    for part in stream():
        y = np.asarray(part.target, dtype=np.float64)
        if y.ndim != 3 or len(y) == 0:
            raise ValueError(f"{part.subject}: time-series targets must be (n, W, R); {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError(f"{part.subject}: the training targets hold NaN or infinite values")
        offsets = np.zeros(len(y), np.int64) if by_time else np.asarray(part.window_start)
        offsets = GroupMeanBaseline._offsets(offsets.astype(np.int64), len(y))
        window = y.shape[1] if window is None else window
        length = int(offsets.max()) + window
        if total is None:
            total, count = np.zeros((length, y.shape[2])), np.zeros(length)
        elif length > len(total):  # a later window reaches further: extend the sums
            total = np.concatenate([total, np.zeros((length - len(total), y.shape[2]))])
            count = np.concatenate([count, np.zeros(length - len(count))])
        index = offsets[:, None] + np.arange(window)
        np.add.at(total, index, y)
        np.add.at(count, index, 1)
    if total is None:
        raise ValueError("the training split has no samples")
    group = GroupMeanBaseline("time_series")
    covered = count > 0
    group.template_ = np.full(total.shape, np.nan)
    group.template_[covered] = total[covered] / count[covered, None]
    group.covered_, group.window_ = covered, window
    return group


#: ``() -> iterable of (X rows (m, D), Y rows (m, P))``: the training rows, the same each call
RowSource = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def _blocks(
    source: RowSource, block_rows: int | None, targets: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The rows of ``source`` as float64 blocks (copies, free to change in place) of
    ``block_rows`` rows (by :data:`BLOCK_BYTES` when None); the same blocks on every call
    with the same ``targets``. Without ``targets``, blocks hold the inputs only (Y is None)."""
    xs, ys, held = [], [], 0
    limit = block_rows
    for x, y in source():
        x = np.array(x, dtype=np.float64).reshape(len(x), -1)
        y = np.array(y, dtype=np.float64).reshape(len(y), -1) if targets else None
        if targets and len(x) != len(y):
            raise ValueError(f"X has {len(x)} rows but Y has {len(y)}")
        if not (np.isfinite(x).all() and (y is None or np.isfinite(y).all())):
            raise ValueError("the training rows hold NaN or infinite values")
        if limit is None:
            width = x.shape[1] + (y.shape[1] if targets else 0)
            limit = max(1, BLOCK_BYTES // (8 * width))
        xs.append(x), ys.append(y)
        held += len(x)
        while held >= limit:
            X = np.concatenate(xs) if len(xs) > 1 else xs[0]
            Y = (np.concatenate(ys) if len(ys) > 1 else ys[0]) if targets else None
            xs = [X[limit:].copy()] if len(X) > limit else []
            ys = [Y[limit:].copy()] if targets and len(Y) > limit else [None] * len(xs)
            held -= limit
            yield X[:limit], None if Y is None else Y[:limit]
            del X, Y
    if held:
        X = np.concatenate(xs) if len(xs) > 1 else xs[0]
        yield X, (np.concatenate(ys) if len(ys) > 1 else ys[0]) if targets else None


def _add_product(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``out += a.T @ b`` without a temporary of ``out``'s size (BLAS ``dgemm`` with beta 1
    into the Fortran-ordered ``out``: the k x P targets' projection is the model's size)."""
    from scipy.linalg.blas import dgemm

    result = dgemm(1.0, a, b, beta=1.0, c=out, trans_a=True, overwrite_c=True)
    if result is not out:  # pragma: no cover - dgemm copies a C-ordered out
        out[...] = result


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations, merged block by block (Chan et al. 1979)."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def add(self, block: np.ndarray) -> None:
        m = len(block)
        mean = block.mean(axis=0)
        m2 = ((block - mean) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = m, mean, m2
            return
        n = self.n + m
        delta = mean - self.mean
        self.mean = self.mean + delta * (m / n)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * m / n)
        self.n = n

    def scale(self) -> np.ndarray:
        """``StandardScaler``'s scale: the population SD, 1 where it is (near) zero."""
        scale = np.sqrt(self.m2 / self.n)
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
        return scale


class StreamingRidge:
    """:class:`~modalmerge.evaluation.baselines.RidgeBaseline` (no categorical columns) fitted
    from a re-readable stream of training rows.

    Parameters
    ----------
    alphas : array_like of float
        Penalties; the one with the least mean squared leave-one-out error over all rows
        and targets is chosen (the first of equals, as ``RidgeCV``).
    pca : bool or "auto"
        As :class:`~modalmerge.evaluation.baselines.RidgeBaseline`: ``"auto"`` projects on
        principal components when features outnumber rows tenfold.
    n_components : int, optional
        Principal components kept (capped at ``n - 1``; all ``n - 1`` when None).
    block_rows : int, optional
        Rows per block (default: what :data:`BLOCK_BYTES` holds).

    Attributes
    ----------
    alpha_ : float
    cv_errors_ : ndarray (n_alphas,)
        Mean squared leave-one-out error of each alpha (standardised targets).
    n_rows_ : int
    """

    def __init__(self, alphas, pca="auto", n_components: int | None = None, block_rows=None):
        self.alphas = np.asarray(alphas, dtype=np.float64)
        if self.alphas.ndim != 1 or self.alphas.size == 0 or not (self.alphas > 0).all():
            raise ValueError("alphas must be a non-empty 1-D array of positive numbers")
        if pca not in (True, False, "auto"):
            raise ValueError(f"pca must be True, False or 'auto'; got {pca!r}")
        self.pca, self.n_components, self.block_rows = pca, n_components, block_rows

    def _standard(self, source: RowSource, targets: bool = True):
        """Blocks of standardised inputs and targets (None without ``targets``)."""
        for x, y in _blocks(source, self.block_rows, targets):
            x -= self.x_mean_
            x /= self.x_scale_
            if y is not None:
                y -= self.y_mean_
                y /= self.y_scale_
            yield x, y

    def fit(self, source: RowSource) -> StreamingRidge:
        """Fit on the rows of ``source`` (called once per pass: 4 passes, and with PCA one
        more per block of rows for the kernel). Memory: one block of rows, the running
        statistics, and the model itself: with PCA an ``n x n`` kernel (n rows: one per
        training subject for whole-run targets), ``D x k`` components and ``k x P``
        coefficients; without, a ``D x D`` Gram matrix and ``rank x P`` coefficients."""
        xm, ym = _Moments(), _Moments()
        for x, y in _blocks(source, self.block_rows):
            xm.add(x), ym.add(y)
        n = xm.n
        if n < 3:
            raise ValueError(f"ridge with cross-validated alpha needs at least 3 rows; got {n}")
        self.n_rows_ = n
        self.x_mean_, self.x_scale_ = xm.mean, xm.scale()
        self.y_mean_, self.y_scale_ = ym.mean, ym.scale()
        n_features = len(self.x_mean_)
        use_pca = self.pca is True or (self.pca == "auto" and n_features > 10 * n)
        if use_pca:
            k = min(self.n_components or n - 1, n - 1)
            scores, s = self._kernel_pca(source, n, k)
            z_y = np.zeros((len(s), len(self.y_mean_)), order="F")
            components = np.zeros((n_features, len(s)))
            row = 0
            for x, y in self._standard(source):  # components = X' U / s; scores' targets
                z = scores[row : row + len(x)]
                components += x.T @ (z / s**2)
                _add_product(z_y, z, y)
                row += len(x)
            self.components_ = components
            self._scores = scores
        else:
            gram = np.zeros((n_features, n_features))
            for x, _ in self._standard(source, targets=False):
                gram += x.T @ x
            eigval, eigvec = np.linalg.eigh(gram)
            keep = eigval > eigval.max() * n_features * np.finfo(np.float64).eps
            s, self.components_ = np.sqrt(eigval[keep]), eigvec[:, keep]
            del gram, eigvec
            z_y = np.zeros((len(s), len(self.y_mean_)), order="F")  # not X'Y: rank x targets
            for x, y in self._standard(source):
                _add_product(z_y, x @ self.components_, y)
            self._scores = None
        self.singular_values_ = s
        z_y /= s[:, None]  # U'Y, in place: the model's size (k x P) is held once
        self.alpha_ = self._choose_alpha(source, s, z_y, n)
        z_y *= (s / (s**2 + self.alpha_))[:, None]  # ridge on Z = U S: B = (S^2 + a)^-1 S U'Y
        self.coef_ = z_y
        del self._scores
        return self

    def _kernel_pca(self, source: RowSource, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` PCA scores ``U S`` (n, k) and singular values of the standardised rows,
        from their kernel ``X X'`` built block pair by block pair (lower triangle, mirrored)."""
        kernel = np.zeros((n, n))
        lo_i = 0
        for xi, _ in self._standard(source, targets=False):
            hi_i = lo_i + len(xi)
            lo_j = 0
            for xj, _ in self._standard(source, targets=False):
                hi_j = lo_j + len(xj)
                block = xi @ xj.T
                kernel[lo_i:hi_i, lo_j:hi_j] = block
                kernel[lo_j:hi_j, lo_i:hi_i] = block.T
                if hi_j >= hi_i:
                    break
                lo_j = hi_j
            lo_i = hi_i
        # the rows are standardised, so already centred up to rounding: centre the kernel
        # exactly as PCA centres the rows (I - 11'/n) K (I - 11'/n)
        mean_row = kernel.mean(axis=0)
        kernel = kernel - mean_row[None, :] - mean_row[:, None] + mean_row.mean()
        eigval, eigvec = np.linalg.eigh(kernel)
        order = np.argsort(eigval)[::-1][:k]
        eigval = np.clip(eigval[order], 0.0, None)
        keep = eigval > eigval.max() * n * np.finfo(np.float64).eps
        s = np.sqrt(eigval[keep])
        return eigvec[:, order[keep]] * s, s

    def _choose_alpha(self, source, s: np.ndarray, u_y: np.ndarray, n: int) -> float:
        """The alpha of least mean squared leave-one-out error (``_RidgeGCV``'s criterion)."""
        sse = np.zeros(len(self.alphas))
        row = 0
        for x, y in self._standard(source):
            if self._scores is not None:
                z = self._scores[row : row + len(x)]
            else:
                z = x @ self.components_
            row += len(x)
            u = z / s
            for a, alpha in enumerate(self.alphas):
                f = s**2 / (s**2 + alpha)
                error = (u * f) @ u_y  # fitted, then the leave-one-out error, in place
                error -= y
                error /= (1.0 - ((u**2) @ f + 1.0 / n))[:, None]  # the intercept adds 1/n
                sse[a] += np.einsum("ij,ij->", error, error)
                del error
        self.cv_errors_ = sse / (n * u_y.shape[1])  # mean squared LOO error per alpha
        best = int(np.argmin(sse))  # the first of equal errors, as RidgeCV keeps the first
        return float(self.alphas[best])

    def predict(self, X) -> np.ndarray:
        """Predictions ``(n, P)`` for rows ``(n, ...)`` (flattened like the training rows)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("StreamingRidge is not fitted: call fit() first")
        x = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        if x.shape[1] != len(self.x_mean_):
            raise ValueError(f"X has {x.shape[1]} features; fitted on {len(self.x_mean_)}")
        if not np.isfinite(x).all():
            raise ValueError("X holds NaN or infinite values")
        z = ((x - self.x_mean_) / self.x_scale_) @ self.components_
        return (z @ self.coef_) * self.y_scale_ + self.y_mean_
