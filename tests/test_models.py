"""MultiModalModel: every modality pair x conditioning method builds, runs and round-trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modalmerge.io import InputError
from modalmerge.models import MultiModalModel, Tokenizer, TokenProvenance, available
from modalmerge.models.layers import Encoder
from modalmerge.models.registry import register_encoder
from tests._model_fixtures import (
    CARDS,
    DIM,
    HEADS,
    MAX_LEN,
    MODALITIES,
    N_NUM,
    SERIES,
    VOCAB,
    B,
    batch,
    check_prediction,
    scalar_loss,
    tiny_model,
)

torch.set_num_threads(1)

METHODS = ["cross_attention", "spatial_mix", "film", "adain", "concat"]
WEIGHTED = ("cross_attention", "spatial_mix")  # methods that return weights


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", MODALITIES)
@pytest.mark.parametrize("condition", MODALITIES)
def test_every_condition_target_and_method_trains_end_to_end(condition, target, method):
    torch.manual_seed(0)
    model = tiny_model(condition, target, method)
    x = batch(condition)
    y = batch(target, seed=1)
    out = model(x, target=y, return_attention=True)
    check_prediction(out.prediction, target)
    n_condition = model.condition_provenance().n_tokens
    n_target = model.target_provenance().n_tokens
    if method in WEIGHTED:
        assert out.attention.shape == (B, HEADS, n_target, n_condition)
    else:
        assert out.attention is None
    scalar_loss(out.prediction).backward()
    # every weight takes part (DistributedDataParallel needs no unused parameters)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


ENCODER_CASES = [
    ("image", "resnet18", (1, 13, 17, 9), {}),
    ("image", "resnet34", (2, 20, 24), {}),
    ("image", "resnet50", (1, 16, 16), {"feature_layer": "layer4"}),
    ("image", "cnn", (3, 11, 7), {"n_blocks": 2}),
    ("time_series", "lstm", (5, 4), {"tokenize": "roi", "labels": ["a", "b", "c", "d"]}),
    ("time_series", "transformer", (5, 4), {"tokenize": "time", "n_layers": 1}),
    ("time_series", "transformer", (5, 4), {"tokenize": "roi", "n_layers": 1}),
    ("text", "lstm", None, {}),
    ("text", "gru", None, {}),
    ("tabular", "mlp", None, {"labels": ["age", "iq", "sex", "group"]}),
    ("point_cloud", "point_transformer", (30, 4), {"n_tokens": 5, "neighbours": [3, 6]}),
    ("point_cloud", "point_transformer", (16, 3), {"n_tokens": 16, "n_layers": 0}),
    ("volume_series", "spatiotemporal", (5, 9, 8, 7), {"n_layers": 1, "time_patch": 2}),
    ("volume_series", "spatiotemporal", (3, 8, 8, 8), {"n_layers": 1, "attention": "joint"}),
]


@pytest.mark.parametrize("modality,name,shape,options", ENCODER_CASES)
def test_encoder_token_count_matches_its_provenance(modality, name, shape, options):
    torch.manual_seed(0)
    model = tiny_model(
        modality,
        "time_series",
        condition_encoder=name,
        condition_shape=shape,
        encoder_options=options,
    )
    x = batch(modality, shape)
    tokens, _ = model.encode(x)
    prov = model.condition_provenance(tuple(x.shape[1:]))
    assert isinstance(prov, TokenProvenance)
    assert tokens.shape == (B, prov.n_tokens, DIM)
    assert prov.input_shape == tuple(x.shape[1:])
    assert model.condition_provenance(tuple(x.shape)) == prov  # a batch axis is allowed
    if modality == "image":
        assert prov.kind == "image_grid" and math.prod(prov.grid_shape) == prov.n_tokens
    if modality == "volume_series":
        assert prov.kind == "space_time" and math.prod(prov.grid_shape) == prov.n_tokens
    if "labels" in options:
        assert list(prov.labels) == options["labels"]


def test_image_attention_reshapes_onto_grid_and_upsamples_onto_the_image():
    torch.manual_seed(0)
    shape = (1, 36, 44, 36)
    model = tiny_model(
        "image", "tabular", condition_encoder="resnet18", condition_shape=shape, encoder_options={}
    )
    model.eval()
    x = torch.randn(1, *shape)
    with torch.no_grad():
        att = model(x, return_attention=True).attention  # (1, heads, n_target, n_condition)
    prov = model.condition_provenance()
    assert model.encoder.feature_layer == "layer4" and prov.grid_shape == (3, 3, 3)
    maps = att.mean(1).reshape(1, -1, *prov.grid_shape)  # (1, n_target, d, h, w)
    on_image = F.interpolate(maps, size=prov.input_shape[1:], mode="trilinear")
    assert on_image.shape == (1, N_NUM + len(CARDS), 36, 44, 36)


def test_resnet_falls_back_to_layer3_on_small_images():
    model = tiny_model(
        "image",
        "tabular",
        condition_encoder="resnet18",
        condition_shape=(1, 16, 16, 16),
        encoder_options={},  # the cnn's n_blocks is no resnet option
    )
    assert model.encoder.feature_layer == "layer3"
    assert model.condition_provenance().grid_shape == (2, 2, 2)
    assert model.encode(batch("image", (1, 16, 16, 16)))[0].shape == (B, 8, DIM)


def test_cross_attention_weights_are_a_softmax_equal_to_the_fast_path():
    torch.manual_seed(0)
    model = tiny_model("time_series", "tabular", conditioning_layers=2).eval()
    x = batch("time_series")
    with torch.no_grad():
        fast = model(x)
        slow = model(x, return_attention=True)
        # recompute the last layer's weights from its own projections
        tokens, _ = model.encode(x)
        layer0, layer1 = model.conditioner.layers
        queries, _ = layer0(model.decoder.queries(B), tokens)
        q = layer1._heads(layer1.to_q(queries))
        k = layer1._heads(layer1.to_kv(layer1.condition_norm(tokens)).chunk(2, -1)[0])
        expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(DIM // HEADS), dim=-1)
    assert fast.attention is None
    assert slow.attention.shape == (B, HEADS, N_NUM + len(CARDS), SERIES[0])
    torch.testing.assert_close(slow.attention.sum(-1), torch.ones(B, HEADS, N_NUM + len(CARDS)))
    torch.testing.assert_close(slow.attention, expected)
    torch.testing.assert_close(slow.prediction["numeric"], fast.prediction["numeric"])
    for a, b in zip(slow.prediction["categorical"], fast.prediction["categorical"], strict=True):
        torch.testing.assert_close(a, b)


def test_padding_words_of_a_text_condition_get_no_attention():
    torch.manual_seed(0)
    model = tiny_model("text", "time_series").eval()
    ids = batch("text")
    with torch.no_grad():
        att = model(ids, return_attention=True).attention
        shorter = model(ids[:, :4]).prediction  # the padding is not part of the condition
        full = model(ids).prediction
    assert torch.all(att[..., 4:] == 0)
    torch.testing.assert_close(att.sum(-1), torch.ones_like(att.sum(-1)))
    assert shorter.shape == full.shape


def test_time_offset_gives_time_queries_absolute_positions():
    torch.manual_seed(0)
    model = tiny_model("tabular", "time_series").eval()
    dec = model.decoder
    base = dec.queries(1) - dec.query  # the sinusoidal part only
    shifted = dec.queries(1, time_offset=torch.tensor([2])) - dec.query
    torch.testing.assert_close(shifted[0, :-2], base[0, 2:])
    x = batch("tabular")
    with torch.no_grad():
        a = model(x, time_offset=torch.tensor([0, 0])).prediction
        b = model(x, time_offset=torch.tensor([0, 7])).prediction
        c = model(x).prediction
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_roi_queries_emit_whole_windows():
    model = tiny_model(
        "tabular", "time_series", target_decoder="lstm", decoder_options={"query": "roi"}
    )
    out = model(batch("tabular"), time_offset=torch.tensor([3, 9]))
    assert out.prediction.shape == (B, *SERIES)
    assert (
        model.target_provenance().kind == "roi" and model.target_provenance().n_tokens == SERIES[1]
    )


def test_image_decoder_reaches_odd_target_shapes():
    torch.manual_seed(0)
    for shape in [(1, 36, 44, 36), (2, 15, 9)]:
        model = tiny_model("tabular", "image", target_shape=shape)
        pred = model(batch("tabular")).prediction
        assert pred.shape == (B, *shape)
        prov = model.target_provenance()
        assert prov.kind == "image_grid" and prov.n_tokens == model.decoder.n_queries


def test_the_seed_call_builds_and_runs_on_a_small_3d_image():
    torch.manual_seed(0)
    model = MultiModalModel(
        condition_type="image",
        target_type="time_series",
        condition_encoder="resnet50",
        target_decoder="transformer",
        embedding_dim=512,
        num_attention_heads=16,
        condition_shape=(1, 32, 32, 32),
    ).eval()
    cfg = model.config
    assert (cfg["condition_encoder"], cfg["embedding_dim"], cfg["num_attention_heads"]) == (
        "resnet50",
        512,
        16,
    )
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 32, 32), return_attention=True)
    assert out.prediction.shape == (1, *model.target_shape)
    assert out.attention.shape == (1, 16, model.target_shape[0], 8)


def test_config_round_trip_rebuilds_an_identical_model():
    torch.manual_seed(0)
    tok = Tokenizer.fit(["a small brain", "a large brain!"])
    model = tiny_model(
        "image", "text", tokenizer=tok, vocab_size=None, target_decoder="transformer"
    )
    clone = MultiModalModel.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    x, y = batch("image"), tok.encode_batch(["a brain", "large"], MAX_LEN)
    y = torch.tensor(y)
    torch.testing.assert_close(model(x, y).prediction, clone(x, y).prediction)
    assert clone.config == model.config and clone.tokenizer.to_dict() == tok.to_dict()


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = tiny_model("time_series", "tabular", "film", encoder_options={"tokenize": "roi"}).eval()
    path = model.save(tmp_path / "models" / "model.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temporary left
    loaded = MultiModalModel.load(path)
    assert loaded.config == model.config
    loaded.eval()
    x = batch("time_series")
    with torch.no_grad():
        a, b = model(x).prediction, loaded(x).prediction
    torch.testing.assert_close(a["numeric"], b["numeric"])
    data = torch.load(path, weights_only=True)
    assert set(data) == {"config", "state_dict"}


def test_two_saves_of_equal_weights_are_byte_identical_whatever_the_temporary_name(
    tmp_path, monkeypatch
):
    """model.pt of two identical trainings (other processes, so other temporary names
    ``.tmp-<pid>-model.pt``) must be the same bytes: the archive's folder is not the
    temporary file's name. Both load, memory-mapped, to the same weights."""
    import os
    import zipfile

    torch.manual_seed(0)
    model = tiny_model("time_series", "tabular", "film").eval()
    paths = []
    for pid in (1234, 56789):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        paths.append(model.save(tmp_path / f"run{pid}" / "model.pt"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert not any(".tmp-" in name for name in zipfile.ZipFile(paths[0]).namelist())
    loaded = MultiModalModel.load(paths[1])  # mmap=True
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_loading_a_broken_model_file_names_the_file(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="model.pt"):
        MultiModalModel.load(bad)
    with pytest.raises(InputError, match="missing"):
        MultiModalModel.load(tmp_path / "absent.pt")


@register_encoder("time_series", "test_mean_per_channel")
class MeanPerChannelEncoder(Encoder):
    """A user's own encoder, registered from outside the package."""

    def __init__(self, input_shape, dim, **_):
        super().__init__()
        self.proj = torch.nn.Linear(1, dim)
        self.n_channels = input_shape[1]

    def forward(self, x):
        return self.proj(x.mean(1, keepdim=True).transpose(1, 2))  # (B, channels, dim)

    def token_provenance(self, input_shape=None):
        return TokenProvenance("roi", self.n_channels)


def test_a_new_encoder_registers_without_editing_the_factory():
    assert "test_mean_per_channel" in available()["encoders"]["time_series"]
    model = tiny_model("time_series", "image", condition_encoder="test_mean_per_channel")
    out = model(batch("time_series"), return_attention=True)
    assert out.attention.shape[-1] == SERIES[1]


# ------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def image_model():
    torch.manual_seed(0)
    return tiny_model("image", "time_series")


@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.randn(B, 8, 8, 8), r"shape \(B, 1, 8, 8, 8\), got \(2, 8, 8, 8\)"),
        (torch.randn(B, 2, 8, 8, 8), r"shape \(B, 1, 8, 8, 8\), got \(2, 2, 8, 8, 8\)"),
        (torch.ones(B, 1, 8, 8, 8, dtype=torch.long), "floating point, got dtype torch.int64"),
        (torch.full((B, 1, 8, 8, 8), float("nan")), "NaN or infinite"),
        (torch.full((B, 1, 8, 8, 8), float("inf")), "NaN or infinite"),
        (torch.empty(0, 1, 8, 8, 8), "batch is empty"),
        ([[1.0]], "must be a torch.Tensor, got list"),
    ],
)
def test_bad_image_condition_is_refused_with_what_was_expected(image_model, bad, message):
    with pytest.raises(ValueError, match=message):
        image_model(bad)


def test_bad_time_offset_is_refused(image_model):
    x = batch("image")
    with pytest.raises(ValueError, match="integer"):
        image_model(x, time_offset=torch.zeros(B))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        image_model(x, time_offset=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 0"):
        image_model(x, time_offset=torch.tensor([0, -1]))


def test_float_or_out_of_vocabulary_ids_are_refused():
    model = tiny_model("text", "time_series")
    with pytest.raises(ValueError, match="integer token ids.*torch.float32"):
        model(batch("text").float())
    ids = batch("text")
    ids[0, 1] = VOCAB
    with pytest.raises(ValueError, match=rf"\[0, {VOCAB}\)"):
        model(ids)
    with pytest.raises(ValueError, match="1 <= L <= 6"):
        model(torch.ones(B, MAX_LEN + 1, dtype=torch.long))


def test_bad_tabular_codes_are_refused_but_missing_codes_are_allowed():
    model = tiny_model("tabular", "time_series")
    x = batch("tabular")
    x[0, N_NUM] = 3  # first categorical column has 3 categories
    with pytest.raises(ValueError, match="column 2 holds codes >= its 3 categories"):
        model(x)
    x[0, N_NUM] = 0.5
    with pytest.raises(ValueError, match="integer codes"):
        model(x)
    x[0, N_NUM] = -1  # missing
    assert model(x).prediction.shape == (B, *SERIES)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"condition_type": "audio"}, r"unknown condition_type 'audio'.*'image'"),
        ({"target_type": "video"}, r"unknown target_type 'video'.*'tabular'"),
        (
            {"condition_encoder": "vit"},
            r"unknown image encoder 'vit'; known: \['cnn', 'region_cnn', 'resnet18'",
        ),
        (
            {"target_decoder": "gan"},
            r"unknown time_series decoder 'gan'; known: \['denoiser', 'lstm'",
        ),
        ({"conditioning": "gating"}, r"unknown conditioning method 'gating'; known: \['adain'"),
        ({"num_attention_heads": 3}, "multiple of num_attention_heads"),
        ({"condition_shape": (8, 8)}, r"\(C, H, W\) or \(C, D, H, W\)"),
        ({"target_shape": (6,)}, r"\(T, channels\)"),
        ({"encoder_options": {"n_blocks": torch.tensor(2)}}, "plain JSON values"),
        (
            {"encoder_options": {"feature_layer": "layer9"}, "condition_encoder": "resnet18"},
            "feature_layer",
        ),
        ({"decoder_options": {"query": "voxel"}}, "query must be 'time' or 'roi'"),
    ],
)
def test_bad_model_settings_are_refused_with_the_known_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**{"condition": "image", "target": "time_series", **kwargs})


def test_text_and_tabular_need_their_sizes():
    with pytest.raises(ValueError, match="vocab_size or a tokenizer"):
        MultiModalModel("text", "image", vocab_size=None)
    with pytest.raises(ValueError, match="n_numeric and/or categorical_cardinalities"):
        MultiModalModel("tabular", "time_series")
    with pytest.raises(ValueError, match="disagrees"):
        MultiModalModel("tabular", "time_series", n_numeric=2, condition_shape=(3,))


def test_space_time_tokens_map_back_to_their_volume_and_patch():
    """Token i of the spatiotemporal encoder is grid cell i (time-major): changing one voxel
    of one volume changes, before any attention, only the token whose (t, x, y, z) covers it."""
    from modalmerge.models.encoders.volume_series import SpatioTemporalEncoder
    from modalmerge.models.layers import space_time_coordinates

    torch.manual_seed(0)
    encoder = SpatioTemporalEncoder((5, 9, 8, 7), DIM, patch=4, time_patch=2, n_layers=0)
    prov = encoder.token_provenance()
    assert prov.grid_shape == (3, 3, 2, 2)  # T and the spatial axes padded to whole patches
    x = torch.zeros(1, 5, 9, 8, 7)
    base = encoder(x)
    x[0, 3, 8, 1, 6] = 5.0  # volume 3, voxel (8, 1, 6)
    changed = (encoder(x) - base).abs().sum(-1)[0].nonzero().flatten().tolist()
    coords = space_time_coordinates(prov)
    assert len(changed) == 1
    t, cx, cy, cz = coords[changed[0]].tolist()
    assert t == 2  # the tubelet of volumes 2-3
    assert (cx, cy, cz) == (9.5, 1.5, 5.5)  # centre of the patch holding voxel (8, 1, 6)
    assert coords.shape == (prov.n_tokens, 4)


def test_divided_attention_mixes_tokens_across_space_and_time():
    """After one divided block a token depends on tokens of another volume AND another patch."""
    from modalmerge.models.encoders.volume_series import SpatioTemporalEncoder

    torch.manual_seed(0)
    encoder = SpatioTemporalEncoder((2, 8, 4, 4), DIM, patch=4, n_layers=1, n_heads=HEADS).eval()
    x = torch.zeros(1, 2, 8, 4, 4)
    base = encoder(x)
    x[0, 1, 5, 1, 1] = 3.0  # volume 1, second patch
    delta = (encoder(x) - base).abs().sum(-1)[0]  # tokens (t, d): (0,0) (0,1) (1,0) (1,1)
    assert delta[0] > 1e-6  # volume 0, first patch: reached through time then space


@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.randn(2, 3, 8, 8), r"must have shape \(B, 3, 8, 8, 8\)"),
        (torch.randn(2, 4, 8, 8, 8), r"must have shape \(B, 3, 8, 8, 8\)"),
        (torch.full((2, 3, 8, 8, 8), float("nan")), "NaN or infinite"),
        (torch.zeros(2, 3, 8, 8, 8, dtype=torch.long), "floating point"),
    ],
)
def test_bad_volume_series_is_refused_with_what_was_expected(bad, message):
    model = tiny_model("volume_series", "tabular")
    with pytest.raises(ValueError, match=message):
        model(bad)


def test_volume_series_shape_must_be_four_axes():
    with pytest.raises(ValueError, match=r"\(T, D, H, W\)"):
        tiny_model("volume_series", "tabular", condition_shape=(8, 8, 8))
