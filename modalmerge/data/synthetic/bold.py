"""Synthetic BOLD: a coupled regional network, the task response, and realistic noise.

Regional signal (percent signal change of a grey-matter voxel) is

- spontaneous activity: a linear stochastic network ``x[t+1] = a x[t] +
  C x[t] + e[t]`` at the TR, ``C`` the subject's coupling matrix, convolved
  with the Glover HRF;
- plus the task-evoked response (:func:`synthetic_task.evoked_response`) with
  the subject's regional amplitudes and latencies.

A voxel carries the regional signals through its soft region membership,
weighted by its cortical grey-matter fraction, on top of its tissue baseline
(EPI-like T2* contrast, bias field) and noise: spatially smooth 1/f
fluctuations, slow drift, cardiac (~1.1 Hz) and respiratory (~0.3 Hz) cycles
sampled at each slice's acquisition time (hence aliased at the TR), voxel-wise
AR(1) noise and white thermal noise at the requested tSNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modalmerge.data.synthetic.anatomy import Template, smooth_field, template
from modalmerge.data.synthetic.factors import NEURAL_AR, SubjectTruth
from modalmerge.data.synthetic.hrf import canonical_hrf
from modalmerge.data.synthetic.params import STREAM_BOLD, SyntheticParams, rng_for
from modalmerge.data.synthetic.task import evoked_response

SPONTANEOUS_PCT = 1.0  # mean std of spontaneous regional signal, percent
GLOBAL_SHOCK = 0.15  # share of the neural innovations' variance common to all regions
SMOOTH_NOISE_PCT = 0.3  # std of each spatially smooth 1/f noise mode, percent
N_SMOOTH_MODES = 24
DRIFT_PCT = 0.2  # typical size of slow drift over the run, percent
CARDIAC_PCT = 0.25  # cardiac fluctuation in CSF, percent
RESPIRATORY_PCT = 0.08  # respiratory fluctuation, percent
VOXEL_AR = 0.4  # lag-1 autocorrelation of the voxel-wise non-thermal noise
VOXEL_AR_REL = 0.5  # its std relative to the thermal noise

# EPI (T2*-weighted) baseline intensities
BOLD_INTENSITY = {
    "scalp": 350.0,
    "skull": 150.0,
    "csf": 1600.0,
    "gm": 1100.0,
    "deep_gm": 1050.0,
    "wm": 850.0,
    "lesion": 1250.0,
}


@dataclass(frozen=True)
class BoldResult:
    """The rendered run and its regional truths."""

    data: np.ndarray  # (X, Y, Z, T) int16, Fortran-ordered
    slope: float  # intensity = data * slope
    evoked: np.ndarray  # (T, R) task-evoked regional signal, percent
    spontaneous: np.ndarray  # (T, R) spontaneous regional signal, percent
    #: (X, Y, Z, T) float32 intensity, Fortran-ordered: the run with every random term off
    #: (:func:`render_bold`, "noise-free run"), in the observed run's units (``data * slope``)
    noisefree: np.ndarray | None = None


def _ar1(noise: np.ndarray, a: float) -> np.ndarray:
    """AR(1) along axis 0 with unit stationary variance: y[t] = sqrt(1-a^2) x[t] + a y[t-1]
    (in place; a loop over time, vectorised over voxels)."""
    noise *= np.sqrt(1.0 - a * a)
    for t in range(1, len(noise)):
        noise[t] += a * noise[t - 1]
    return noise


def spontaneous_activity(
    p: SyntheticParams,
    coupling: np.ndarray,
    rng: np.random.Generator,
    connectome: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
    """Spontaneous hemodynamic regional signal (T, R) in percent signal change.

    ``connectome``: ``(SC, g)`` makes the neural process the Ornstein-Uhlenbeck
    process of :mod:`modalmerge.data.synthetic.connectome` sampled at the TR
    (its step makes an uncoupled region's persistence per TR ``NEURAL_AR``), with
    no common shock; ``coupling`` is then unused. None: the default cohort's
    VAR(1) ``NEURAL_AR I + coupling`` with a shared shock.
    """
    n_regions = coupling.shape[0]
    hrf = canonical_hrf(p.tr, 32.0)
    burn = 50 + len(hrf)
    if connectome is None:
        transition = NEURAL_AR * np.eye(n_regions) + coupling
        shocks = rng.standard_normal((p.n_timepoints + burn, n_regions))
        common = rng.standard_normal((p.n_timepoints + burn, 1))
        shocks = np.sqrt(1 - GLOBAL_SHOCK) * shocks + np.sqrt(GLOBAL_SHOCK) * common
    else:
        from modalmerge.data.synthetic.connectome import ou_transition

        transition, chol = ou_transition(*connectome, step=-np.log(NEURAL_AR))
        shocks = rng.standard_normal((p.n_timepoints + burn, n_regions)) @ chol.T
    x = np.zeros((p.n_timepoints + burn, n_regions))
    for t in range(1, len(x)):
        x[t] = transition @ x[t - 1] + shocks[t]
    signal = np.stack([np.convolve(x[:, r], hrf)[: len(x)] for r in range(n_regions)], 1)
    signal = signal[burn:]
    return SPONTANEOUS_PCT * signal / np.mean(np.std(signal, axis=0))


def _one_over_f(rng: np.random.Generator, n_series: int, n_time: int) -> np.ndarray:
    """Unit-variance series (n_series, n_time) with power spectrum ~ 1/f."""
    freqs = np.fft.rfftfreq(n_time)
    shape = 1.0 / np.sqrt(np.maximum(freqs, 1.0 / n_time))
    spectrum = np.fft.rfft(rng.standard_normal((n_series, n_time)), axis=1) * shape
    series = np.fft.irfft(spectrum, n=n_time, axis=1)
    series -= series.mean(axis=1, keepdims=True)
    return series / series.std(axis=1, keepdims=True)


def _physiology(p: SyntheticParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cardiac and respiratory waveforms (T, Z) at each slice's acquisition time."""
    n_slices = p.grid_shape[2]
    # ascending slices spread over the TR
    acq = np.arange(p.n_timepoints)[:, None] * p.tr + np.arange(n_slices)[None, :] * (
        p.tr / n_slices
    )
    dt = 0.05
    fine = np.arange(0.0, p.n_timepoints * p.tr + dt, dt)

    def phase(rate_hz: float, variability: float, period_s: float) -> np.ndarray:
        rate = rate_hz * (
            1.0
            + variability * np.sin(2 * np.pi * fine / period_s + rng.uniform(0, 2 * np.pi))
            + 0.3 * variability * _one_over_f(rng, 1, len(fine))[0]
        )
        return np.interp(acq, fine, 2 * np.pi * np.cumsum(rate) * dt) + rng.uniform(0, 2 * np.pi)

    cardiac = phase(rng.uniform(1.0, 1.2), 0.05, rng.uniform(40, 90))
    respiratory = phase(rng.uniform(0.25, 0.33), 0.08, rng.uniform(50, 120))
    return np.cos(cardiac) + 0.4 * np.cos(2 * cardiac), np.sin(respiratory)


def _regional_to_voxels(regional: np.ndarray, membership: np.ndarray, gm: np.ndarray) -> np.ndarray:
    """Regional percent signal (T, R) onto the head voxels (T, n): soft region membership
    weighted by the voxel's cortical grey-matter fraction (partial volume)."""
    return regional.astype(np.float32) @ membership * gm


def _to_volume(values: np.ndarray, flat: np.ndarray, shape: tuple, dtype) -> np.ndarray:
    """Head-voxel values (T, n) into an (X, Y, Z, T) Fortran-ordered volume, 0 outside."""
    out = np.zeros((len(values), int(np.prod(shape))), dtype)
    out[:, flat] = values
    x, y, z = shape
    return out.reshape(len(values), z, y, x).transpose(3, 2, 1, 0)


def render_bold(
    p: SyntheticParams, truth: SubjectTruth, tissues: dict, *, noisefree: bool = False
) -> BoldResult:
    """Render one subject's BOLD run from its truth and tissue fractions.

    With ``noisefree``, also the noise-free run (``BoldResult.noisefree``): the
    same rendering with every random term off. It is the observed run's
    expectation given the subject's truth: tissue baseline x bias field x
    (1 + 0.01 x evoked response rendered through the same membership and
    grey-matter partial volumes), float32 in the observed run's intensity units,
    0 outside the head. Off: spontaneous activity (its coupling is the
    subject's, its realisation random, mean 0), smooth 1/f noise, drift,
    cardiac and respiratory cycles, voxel AR(1) and thermal noise, the clipping
    at 0 and the int16 quantisation. The bias field is kept: it is a fixed
    multiplicative gain of the subject's run (drawn first, before any noise).
    The random draws are those of the run without ``noisefree``, in the same
    order, so ``data`` is bit-identical either way.

    Returns
    -------
    BoldResult
        ``data`` (X, Y, Z, T) int16 with ``slope`` (values ~ a few hundred to
        ~2000 in the head, exactly 0 outside it), the regional truths, and
        ``noisefree`` (or None).
    """
    # Over 60 lines: the BOLD model's terms summed in one place, so the noise-free run shares every random draw.
    tpl: Template = template(p)
    rng = rng_for(p, truth.index, STREAM_BOLD)
    n_t = p.n_timepoints

    head = sum(tissues.values()) > 0.01
    flat = np.flatnonzero(head.ravel(order="F"))

    def voxels(volume: np.ndarray) -> np.ndarray:
        return volume.ravel(order="F")[flat].astype(np.float32)

    frac = {name: voxels(f) for name, f in tissues.items()}
    bias = voxels(smooth_field(rng, tpl, 0.1))
    baseline = sum(BOLD_INTENSITY[name] * f for name, f in frac.items()) * bias  # (n,)
    coords = np.stack([voxels(c) for c in tpl.coords])  # (3, n)
    z_index = np.unravel_index(flat, head.shape, order="F")[2]
    membership = tpl.membership.reshape(p.n_regions, -1, order="F")[:, flat]  # (R, n)

    # regional signal, percent
    connectome = None if truth.connectome is None else (truth.connectome, truth.connectome_g)
    spontaneous = spontaneous_activity(p, truth.coupling, rng, connectome)
    evoked = evoked_response(p, truth.amplitude, truth.latency, truth.condition_weights)
    percent = _regional_to_voxels(spontaneous + evoked, membership, frac["gm"])  # (T, n)
    clean = None
    if noisefree:  # the same rendering of the evoked response alone, no draw taken
        clean = baseline * (1.0 + 0.01 * _regional_to_voxels(evoked, membership, frac["gm"]))

    # spatially smooth 1/f fluctuations: Gaussian blobs inside the brain
    scale = p.noise_scale
    brain_axes = 0.8 * tpl.head_axes[:, None]
    centers = brain_axes * rng.uniform(-1, 1, (3, N_SMOOTH_MODES)) / np.sqrt(3)
    widths = rng.uniform(12.0, 25.0, N_SMOOTH_MODES)
    dist2 = np.sum((coords[:, :, None] - centers[:, None, :]) ** 2, axis=0)  # (n, K)
    blobs = np.exp(-dist2 / (2 * widths**2)).astype(np.float32)
    modes = _one_over_f(rng, N_SMOOTH_MODES, n_t).astype(np.float32)
    percent += (scale * SMOOTH_NOISE_PCT) * (modes.T @ blobs.T)

    # slow drift: linear, quadratic and half-cosine, with smooth spatial maps
    t = np.linspace(-1.0, 1.0, n_t, dtype=np.float32)
    drifts = np.stack([t, 1.5 * t**2 - 0.5, np.cos(np.pi * (t + 1) / 2)])  # (3, T)
    q = coords / tpl.head_axes[:, None].astype(np.float32)
    design = np.concatenate([np.ones((1, q.shape[1]), np.float32), q])  # (4, n)
    maps = rng.standard_normal((3, 4)).astype(np.float32) @ design * (0.5 * DRIFT_PCT * scale)
    percent += drifts.T @ maps

    # cardiac and respiratory cycles, at each slice's time
    cardiac, respiratory = _physiology(p, rng)
    edge = np.sqrt(np.sum(q**2, axis=0))
    cardiac_w = CARDIAC_PCT * scale * (0.2 + 1.5 * frac["csf"])
    respiratory_w = RESPIRATORY_PCT * scale * (0.5 + edge)
    percent += cardiac[:, z_index].astype(np.float32) * cardiac_w
    percent += respiratory[:, z_index].astype(np.float32) * respiratory_w

    bold = baseline * (1.0 + 0.01 * percent)  # the noise-free run above: same expression
    sigma = float(np.mean(baseline[frac["gm"] + frac["wm"] + frac["deep_gm"] > 0.5])) / p.tsnr
    colored = rng.standard_normal(bold.shape, dtype=np.float32)
    colored = _ar1(colored, VOXEL_AR)
    bold += (VOXEL_AR_REL * sigma * scale) * colored.astype(np.float32)
    bold += sigma * rng.standard_normal(bold.shape, dtype=np.float32)
    np.maximum(bold, 0.0, out=bold)

    slope = float(bold.max()) / 32000.0
    data = _to_volume(np.rint(bold / slope).astype(np.int16), flat, head.shape, np.int16)
    if clean is not None:
        clean = _to_volume(clean, flat, head.shape, np.float32)
    return BoldResult(
        data=data, slope=slope, evoked=evoked, spontaneous=spontaneous, noisefree=clean
    )
