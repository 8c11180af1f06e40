"""The absolute-time read-out of ROI queries (``decoder_options: {readout: run}``, issue 18).

A condition value that sets a target's response in absolute run time (a fixed task
design) changes each window differently, by where the window starts. The window
read-out (one linear map dim -> T shared by every start) can add such a
start-dependent change only through the nonlinearity before it (the LayerNorm or
mixer acting on query + start code + attended value), and learns it slowly;
``readout: run`` reads each ROI out over the whole run and cuts the window, so the
change is linear in the attended value. Also: without the option the model is as before, and a
bad ``run_length`` or a window past the run's end is refused with the reason.
"""

from __future__ import annotations

import pytest
import torch

from modalmerge.models import MultiModalModel

torch.set_num_threads(1)
T, ROIS, RUN, DIM = 8, 3, 24, 16
STARTS = torch.arange(0, RUN - T + 1, 4)  # 0, 4, ..., 16


def _model(decoder_options: dict, n_layers: int = 0, seed: int = 0) -> MultiModalModel:
    torch.manual_seed(seed)
    return MultiModalModel(
        condition_type="time_series",
        target_type="time_series",
        embedding_dim=DIM,
        num_attention_heads=2,
        condition_shape=(4, 2),
        target_shape=(T, ROIS),
        decoder_options={"query": "roi", "n_layers": n_layers, **decoder_options},
        dropout=0.0,
    )


def _toy(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Windows of y[t, r] = g_r(t) + z h_r(t) + noise (t the run time, z the subject's
    value, carried by the condition); g, h fixed random run courses (fixed generator seed)."""
    design = torch.Generator().manual_seed(123)
    g, h = torch.randn(RUN, ROIS, generator=design), torch.randn(RUN, ROIS, generator=design)
    draw = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=draw)
    start = STARTS[torch.randint(len(STARTS), (n,), generator=draw)]
    x = z[:, None, None] * torch.ones(n, 4, 2)
    times = start[:, None] + torch.arange(T)  # (n, T)
    y = g[times] + z[:, None, None] * h[times] + 0.1 * torch.randn(n, T, ROIS, generator=draw)
    return x, y, start


def _fit(model: MultiModalModel, steps: int = 100) -> float:
    """Adam on the toy's training windows; the validation MSE (noise floor 0.01)."""
    x, y, start = _toy(256, seed=1)
    xv, yv, sv = _toy(128, seed=2)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    torch.manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(x), (64,))
        loss = ((model(x[idx], time_offset=start[idx]).prediction - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float(((model(xv, time_offset=sv).prediction - yv) ** 2).mean())


def test_run_readout_fits_a_response_set_in_run_time_where_the_window_readout_lags():
    """Variance of the targets about 2 (g and z h); noise 0.01. After 100 steps the run
    read-out is near the noise (0.024 measured) and the window read-out far above it
    (0.32; it needs about 400 steps to get to 0.024: docs/benchmarks.md, "Absolute-time
    read-out")."""
    run = _fit(_model({"readout": "run", "run_length": RUN}))
    window = _fit(_model({}))
    assert run < 0.05, run
    assert window > 0.15, window


def test_run_readout_attention_does_not_depend_on_the_window_start():
    model = _model({"readout": "run", "run_length": RUN}).eval()
    x = torch.randn(2, 4, 2)
    with torch.no_grad():
        a = model(x, time_offset=torch.tensor([0, 0]), return_attention=True)
        b = model(x, time_offset=torch.tensor([16, 4]), return_attention=True)
    torch.testing.assert_close(a.attention, b.attention, rtol=0, atol=0)
    assert not torch.allclose(a.prediction, b.prediction)
    # the window is the slice of one run course: start 4's first 4 volumes = start 0's last 4
    with torch.no_grad():
        c = model(x, time_offset=torch.tensor([4, 4]))
    torch.testing.assert_close(c.prediction[:, :4], a.prediction[:, 4:], rtol=0, atol=1e-6)


def test_window_readout_is_the_default_and_unchanged():
    """No option, or readout: window, builds the same parameters from the same seed (no new
    weight, the same random draws) and gives the same outputs: the default workflow's
    models are as before."""
    plain, explicit = _model({}, n_layers=2), _model({"readout": "window"}, n_layers=2)
    a, b = plain.state_dict(), explicit.state_dict()
    assert a.keys() == b.keys()
    assert tuple(a["decoder.readout.weight"].shape) == (T, DIM)
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=0, atol=0)
    x, start = torch.randn(2, 4, 2), torch.tensor([0, 8])
    with torch.no_grad():
        torch.testing.assert_close(
            plain.eval()(x, time_offset=start).prediction,
            explicit.eval()(x, time_offset=start).prediction,
            rtol=0,
            atol=0,
        )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"readout": "run"}, "run_length"),
        ({"readout": "run", "run_length": T - 1}, "run_length"),
        ({"readout": "run", "run_length": 24.0}, "run_length"),
        ({"readout": "window", "run_length": RUN}, "readout: run only"),
        ({"readout": "absolute"}, "readout must be"),
    ],
)
def test_bad_readout_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        _model(options)


def test_time_queries_cannot_use_the_run_readout():
    with pytest.raises(ValueError, match="query: roi"):
        MultiModalModel(
            condition_type="time_series",
            target_type="time_series",
            embedding_dim=DIM,
            condition_shape=(4, 2),
            target_shape=(T, ROIS),
            decoder_options={"query": "time", "readout": "run", "run_length": RUN},
        )


def test_a_window_past_the_end_of_the_run_is_refused():
    model = _model({"readout": "run", "run_length": RUN}).eval()
    with pytest.raises(ValueError, match="run_length 24"):
        model(torch.randn(1, 4, 2), time_offset=torch.tensor([RUN - T + 1]))


def test_the_workflow_derives_run_length_from_the_shards(tmp_path):
    """build_model sets run_length to the end of the last window in any split (runs of 20
    volumes, windows of 8 every 4: last start 12); a run_length that disagrees is refused,
    naming the shards."""
    from modalmerge.data.shards.subjects import write_shards
    from modalmerge.io import InputError
    from modalmerge.stages.common import build_model
    from tests.test_shards import PARAMS, make_inputs

    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
    experiment = {
        "name": "run",
        "condition": "image",
        "target": "time_series",
        "encoder": "cnn",
        "embedding_dim": 8,
        "heads": 2,
        "decoder_options": {"query": "roi", "readout": "run"},
    }
    model = build_model(tmp_path / "shards", experiment)
    assert model.decoder.run_length == 20
    assert tuple(model.decoder.readout.weight.shape) == (20, 8)
    bad = {**experiment, "decoder_options": {"query": "roi", "readout": "run", "run_length": 30}}
    with pytest.raises(InputError, match="run_length 30 disagrees"):
        build_model(tmp_path / "shards", bad)
