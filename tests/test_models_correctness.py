"""Model correctness (issue 19): padding, options, plugins, conditioning at initialisation."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from modalmerge.models import MultiModalModel

torch.set_num_threads(1)

VOCAB, MAX_LEN, DIM = 12, 10, 16


def text_ids(pad: int) -> torch.Tensor:
    """Two sentences ``bos w w w eos`` with ``pad`` trailing pads."""
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    return torch.cat([ids, ids.new_zeros(2, pad)], dim=1)


# ----------------------------------------------------------- padding (item 1)


@pytest.mark.parametrize("encoder", ["gru", "lstm"])
def test_trailing_padding_does_not_change_a_recurrent_text_encoding(encoder):
    torch.manual_seed(0)
    model = MultiModalModel(
        "text",
        "time_series",
        condition_encoder=encoder,
        embedding_dim=DIM,
        num_attention_heads=2,
        vocab_size=VOCAB,
        max_length=MAX_LEN,
        target_shape=(6, 3),
        dropout=0.0,
        encoder_options={"n_layers": 2},
    ).eval()
    short, long = text_ids(0), text_ids(MAX_LEN - 5)
    real = short != 0
    with torch.no_grad():
        tokens_short, tokens_long = model.encoder(short), model.encoder(long)
        torch.testing.assert_close(
            tokens_long[:, :5][real], tokens_short[real], atol=1e-6, rtol=1e-5
        )
        torch.testing.assert_close(
            model(long).prediction, model(short).prediction, atol=1e-6, rtol=1e-5
        )


# ------------------------------------------------------ unknown options (item 4)


def ts_model(**kw) -> MultiModalModel:
    args = dict(
        condition_type="tabular",
        target_type="time_series",
        embedding_dim=DIM,
        num_attention_heads=2,
        n_numeric=3,
        target_shape=(6, 3),
        dropout=0.0,
    )
    return MultiModalModel(**{**args, **kw})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"decoder_options": {"querry": "roi"}},
            r"^transformer decoder: unknown option 'querry'; known: labels, n_layers, query, readout, run_length$",
        ),
        (
            {
                "condition_type": "time_series",
                "condition_shape": (6, 3),
                "encoder_options": {"tokenise": "roi"},
            },
            r"^transformer encoder: unknown option 'tokenise'; known: labels, n_layers, tokenize$",
        ),
        (
            {"encoder_options": {"n_layer": 2}},
            r"^mlp encoder: unknown option 'n_layer'; known: labels, n_layers$",
        ),
        (
            {"conditioning": "adaln", "conditioning_options": {"epsilon": 1e-3}},
            r"^adaln conditioning: unknown option 'epsilon'; known: eps$",
        ),
        (
            {"conditioning_options": {"temperature": 2.0}},
            r"^cross_attention conditioning: unknown option 'temperature'; known: sink$",
        ),
        (
            {"decoder_options": {"dropout": 0.5}},
            r"transformer decoder: 'dropout' is a model setting \(dropout=0.0\), not an option",
        ),
        (
            {"decoder_options": {"mixer": "lstm"}},
            r"transformer decoder: unknown option 'mixer'",
        ),
    ],
)
def test_an_unknown_option_is_refused_listing_the_known_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ts_model(**kwargs)


def test_known_options_still_reach_their_block_and_settings_reach_those_that_take_them():
    model = ts_model(
        decoder_options={"query": "roi", "n_layers": 1},
        encoder_options={"n_layers": 2},
        conditioning="adaln",
        conditioning_options={"eps": 1e-3},
    )
    assert model.decoder.query_kind == "roi" and len(model.decoder.mixer.transformer.layers) == 1
    assert len(model.encoder.mixers) == 2 and model.conditioner.layers[0].eps == 1e-3
    image = MultiModalModel(  # the cnn takes neither n_heads nor dropout: they are not passed
        "image",
        "tabular",
        condition_encoder="cnn",
        condition_shape=(1, 8, 8, 8),
        embedding_dim=DIM,
        num_attention_heads=2,
        n_numeric=2,
    )
    assert image.encoder.n_blocks >= 1


# ------------------------------------------------- plugin encoders (item 5)

PLUGIN = """
from torch import nn

from modalmerge.models import TokenProvenance, register_encoder


@register_encoder("time_series", "my_gru")
class MyGRUEncoder(nn.Module):
    def __init__(self, input_shape, dim, hidden=32):  # hidden: an encoder option
        super().__init__()
        self.gru = nn.GRU(input_shape[1], hidden, batch_first=True)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, x):  # (B, T, channels) -> tokens (B, T, dim)
        return self.proj(self.gru(x)[0])

    def token_provenance(self, input_shape):
        return TokenProvenance("time", input_shape[-2])
"""


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """The registry docstring's plain-nn.Module encoder, in a module on sys.path."""
    from modalmerge.models import registry

    name = "mm_test_plugin_encoders"
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    # forget the plugin again after the test (the registry and sys.modules as before)
    monkeypatch.setitem(registry._ENCODERS, "time_series", dict(registry._ENCODERS["time_series"]))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_the_registry_docstring_example_matches_the_plugin_used_here():
    from modalmerge.models import registry

    assert "class MyGRUEncoder(nn.Module):" in registry.__doc__
    example = [line.strip() for line in registry.__doc__.splitlines() if line.strip()]
    for line in PLUGIN.splitlines()[5:]:  # from the decorator on
        assert not line.strip() or line.strip() in example


def test_a_plain_module_plugin_encoder_builds_trains_saves_and_loads(plugin_module, tmp_path):
    from modalmerge.models import registry
    from modalmerge.stages.common import load_experiment_model
    from modalmerge.training.losses import make_loss
    from modalmerge.training.schedule import make_optimizer

    registry.import_plugins([plugin_module])
    torch.manual_seed(0)
    model = MultiModalModel(
        "time_series",
        "time_series",
        condition_encoder="my_gru",
        condition_shape=(6, 3),
        target_shape=(6, 2),
        embedding_dim=DIM,
        num_attention_heads=2,
        dropout=0.0,
        encoder_options={"hidden": 8},
    )
    x, y = torch.randn(4, 6, 3), torch.randn(4, 6, 2)
    before = model.encoder.proj.weight.detach().clone()
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.01)
    make_loss("time_series")(model(x).prediction, y).backward()
    optimizer.step()
    assert not torch.equal(model.encoder.proj.weight, before)
    path = model.save(tmp_path / "model.pt")
    model.eval()
    with torch.no_grad():
        expected = model(x).prediction

    # a fresh process: the plugin is neither imported nor registered
    del registry._ENCODERS["time_series"]["my_gru"]
    del sys.modules[plugin_module]
    with pytest.raises(ValueError, match=r"unknown time_series encoder 'my_gru'.*plugins"):
        MultiModalModel.load(path)
    loaded, _ = load_experiment_model(path, plugins=[plugin_module])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).prediction, expected)


def test_build_model_imports_the_experiment_plugins_first(plugin_module, tmp_path):
    from modalmerge.io import InputError
    from modalmerge.stages.common import build_model

    experiment = {"name": "p", "condition": "time_series", "target": "time_series"}
    with pytest.raises(ValueError, match="plugin module 'no_such_plugin_xyz' cannot be imported"):
        build_model(tmp_path, {**experiment, "plugins": ["no_such_plugin_xyz"]})
    with pytest.raises(InputError):  # no shards here; the plugin was imported before
        build_model(tmp_path, {**experiment, "encoder": "my_gru", "plugins": [plugin_module]})
    assert plugin_module in sys.modules


def test_the_workflow_config_has_a_plugins_list_and_passes_it_to_the_stages():
    from pathlib import Path

    import yaml
    from snakemake.utils import validate

    root = Path(__file__).resolve().parents[1]
    schema = str(root / "workflow/schemas/config.schema.yaml")
    config = yaml.safe_load((root / "config.yaml").read_text())
    validate(config, schema)
    assert config["plugins"] == []
    validate({**config, "plugins": ["my_lab.encoders"]}, schema)
    with pytest.raises(Exception, match="plugins"):
        validate({**config, "plugins": "my_lab.encoders"}, schema)
    # the typed settings give every experiment the plugins, so the experiment JSON that
    # train, evaluate and figures receive carries them
    from modalmerge.settings import from_config, to_dict

    settings = from_config({**config, "plugins": ["my_lab.encoders"]})
    assert all(e.plugins == ("my_lab.encoders",) for e in settings.experiments)
    assert to_dict(settings.experiments[0])["plugins"] == ["my_lab.encoders"]
    assert from_config(config).experiments[0].plugins is None
    with pytest.raises(ValueError, match="plugins"):
        from_config({**config, "plugins": "my_lab.encoders"})


def test_registration_refuses_what_the_model_could_not_use():
    from modalmerge.models import register_decoder, register_encoder

    with pytest.raises(TypeError, match="must be a torch.nn.Module class"):
        register_encoder("time_series", "not_a_module")(object)

    class NoProvenance(torch.nn.Module):
        pass

    with pytest.raises(TypeError, match=r"lacks token_provenance\(\)"):
        register_encoder("time_series", "no_provenance")(NoProvenance)
    with pytest.raises(TypeError, match=r"lacks queries\(\), query_provenance\(\)"):
        register_decoder("time_series", "no_queries")(NoProvenance)


# ------------------------------------------- FiLM / adaptive layer norm (item 6)


@pytest.mark.parametrize("method", ["film", "adaln", "adain"])
def test_film_and_adaptive_layer_norm_start_as_the_unconditioned_path(method):
    from modalmerge.models.registry import get_conditioning

    torch.manual_seed(0)
    layer = get_conditioning(method)(dim=DIM, n_heads=2, dropout=0.0).eval()
    queries = torch.randn(2, 5, DIM)
    one, other = torch.randn(2, 7, DIM), 3 * torch.randn(2, 4, DIM) + 1
    with torch.no_grad():
        unconditioned = queries if method == "film" else F.layer_norm(queries, (DIM,), eps=1e-5)
        expected = layer.ff(unconditioned)
        torch.testing.assert_close(layer(queries, one)[0], expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(layer(queries, other)[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("part", ["gain", "shift"])
def test_a_uniform_film_gain_or_shift_is_not_cancelled(part):
    from modalmerge.models.conditioning import FiLMLayer

    torch.manual_seed(0)
    layer = FiLMLayer(DIM, 2, 0.0).eval()
    last = layer.to_scale_shift[-1]
    queries, condition = torch.randn(2, 5, DIM), torch.randn(2, 3, DIM)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        plain = layer(queries, condition)[0]
        # the same gain (1 + 1 = 2) or shift (+1) on every feature of every query
        half = slice(0, DIM) if part == "gain" else slice(DIM, 2 * DIM)
        last.bias[half] = 1.0
        modulated = layer(queries, condition)[0]
    assert (modulated - plain).abs().max() > 1e-2


def test_adain_is_the_adaptive_layer_norm_under_its_older_name():
    from modalmerge.models.registry import available, get_conditioning

    assert {"adaln", "adain"} <= set(available()["conditioning"])
    assert get_conditioning("adain") is get_conditioning("adaln")
