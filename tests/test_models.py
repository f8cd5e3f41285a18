"""Encoders and heads: shapes, stage structure, gradient flow, LSTM column order and build_head errors."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from mtl.errors import ConfigError
from mtl.models import (
    HEADS,
    DenseHead,
    Encoder,
    LSTMHead,
    PooledHead,
    ResNetEncoder,
    SmallCNN,
    build_head,
)
from mtl.models.encoders import resolve_resnet_weights

torch.set_num_threads(1)

# (factory, in_channels, expected stage channels, total stride)
ENCODERS: dict[str, tuple[Callable[[], Encoder], int, list[int], int]] = {
    "small-stride-rgb": (
        functools.partial(SmallCNN, widths=(4, 8, 16), blocks_per_stage=2),
        3,
        [4, 8, 16],
        8,
    ),
    "small-maxpool-gray": (
        functools.partial(SmallCNN, in_channels=1, widths=(4, 6), blocks_per_stage=1, downsample="maxpool"),
        1,
        [4, 6],
        4,
    ),
    "resnet18-rgb": (functools.partial(ResNetEncoder, depth=18), 3, [64, 128, 256, 512], 32),
    "resnet18-gray": (functools.partial(ResNetEncoder, depth=18, in_channels=1), 1, [64, 128, 256, 512], 32),
    "resnet50-rgb": (functools.partial(ResNetEncoder, depth=50), 3, [256, 512, 1024, 2048], 32),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("key", list(ENCODERS))
def test_encoder_stages_match_forward(key: str) -> None:
    factory, in_channels, expected_channels, stride = ENCODERS[key]
    encoder = factory().eval()
    x = torch.randn(2, in_channels, 64, 64)

    assert encoder.stage_channels == expected_channels
    assert encoder.out_channels == expected_channels[-1]
    h = x
    for i, stage in enumerate(encoder.stages):
        h = stage(h)
        assert h.shape[:2] == (2, encoder.stage_channels[i]), f"stage {i}"
    with torch.no_grad():
        out = encoder(x)
    assert out.shape == (2, expected_channels[-1], 64 // stride, 64 // stride)
    torch.testing.assert_close(out, h.detach())
    assert encoder.feature_size((in_channels, 64, 64)) == (64 // stride, 64 // stride)


def test_small_cnn_halves_resolution_once_per_stage() -> None:
    for downsample in ("stride", "maxpool"):
        encoder = SmallCNN(in_channels=3, widths=(4, 4, 4), blocks_per_stage=3, downsample=downsample)
        h = torch.randn(1, 3, 32, 32)
        sizes = []
        for stage in encoder.stages:
            h = stage(h)
            sizes.append(h.shape[-1])
        assert sizes == [16, 8, 4], downsample
        convs = [m for m in encoder.stages[0].modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 3


def test_feature_size_leaves_encoder_state_alone() -> None:
    encoder = SmallCNN(widths=(4,), blocks_per_stage=1)
    bn = next(m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    assert encoder.feature_size((3, 5, 5)) == (3, 3)
    assert encoder.training
    torch.testing.assert_close(bn.running_mean, before)


@pytest.mark.parametrize("key", ["small-stride-rgb", "resnet18-rgb"])
def test_factory_calls_give_independent_modules(key: str) -> None:
    factory = ENCODERS[key][0]
    first, second = factory(), factory()
    pairs = list(zip(first.parameters(), second.parameters(), strict=True))
    assert pairs
    for a, b in pairs:
        assert a.data_ptr() != b.data_ptr()
    with torch.no_grad():
        next(first.parameters()).add_(1.0)
    assert not torch.equal(next(first.parameters()), next(second.parameters()))


def test_resnet_drops_classifier_and_rejects_bad_config() -> None:
    encoder = ResNetEncoder(depth=18)
    assert not any(isinstance(m, nn.Linear) for m in encoder.modules())
    with pytest.raises(ConfigError, match=r"depth=20.*18, 34, 50"):
        ResNetEncoder(depth=20)
    with pytest.raises(ConfigError, match=r"IMAGENET1K_V1"):
        ResNetEncoder(depth=18, weights="IMAGENET_V9")


def test_resnet_weights_names_resolve_without_download() -> None:
    assert resolve_resnet_weights(18, None) is None
    assert resolve_resnet_weights(18, "DEFAULT") == torchvision.models.ResNet18_Weights.DEFAULT
    assert resolve_resnet_weights(50, "IMAGENET1K_V2") == torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    assert (
        resolve_resnet_weights(34, "ResNet34_Weights.IMAGENET1K_V1")
        == torchvision.models.ResNet34_Weights.IMAGENET1K_V1
    )


def test_resnet_loads_weights_only_when_asked_and_adapts_conv1(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = torchvision.models.resnet18().state_dict()
    calls = []

    def fake_get_state_dict(self: object, *args: object, **kwargs: object) -> dict:
        calls.append(self)
        return reference

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", fake_get_state_dict)
    ResNetEncoder(depth=18)
    assert calls == []

    encoder = ResNetEncoder(depth=18, weights="DEFAULT", in_channels=2)
    assert len(calls) == 1
    torch.testing.assert_close(encoder.stages[3][0].conv1.weight, reference["layer4.0.conv1.weight"])
    expected_conv1 = reference["conv1.weight"].mean(dim=1, keepdim=True).repeat(1, 2, 1, 1) * 1.5
    torch.testing.assert_close(encoder.stages[0][0].weight, expected_conv1)
    assert encoder(torch.randn(2, 2, 32, 32)).shape == (2, 512, 1, 1)


def test_small_cnn_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match=r"downsample.*'stride', 'maxpool'"):
        SmallCNN(downsample="avgpool")
    with pytest.raises(ConfigError, match="widths"):
        SmallCNN(widths=())
    with pytest.raises(ConfigError, match="blocks_per_stage"):
        SmallCNN(blocks_per_stage=0)


# --- heads --------------------------------------------------------------------------------------------------

FEATURES = (2, 8, 3, 5)  # B, C, h, w
OUTPUT_SIZE = (12, 20)
SMALL_OPTIONS = {
    "dense": {"hidden_channels": 6, "num_blocks": 2},
    "pooled": {"hidden_channels": 6, "pool": "max", "dropout": 0.1},
    "lstm": {"hidden_size": 6, "conv_channels": 4, "num_layers": 2},
}
COMBINATIONS = [(name, output) for name, head in HEADS.items() for output in ("map", "vector", "sequence")]
EXPECTED = {"map": (2, 7, *OUTPUT_SIZE), "vector": (2, 7), "sequence": (2, FEATURES[3], 7)}
VALID = {("dense", "map"), ("pooled", "vector"), ("lstm", "vector"), ("lstm", "sequence")}


def make_head(name: str, output: str, **options: object) -> nn.Module:
    return build_head(
        {"name": name, **SMALL_OPTIONS[name], **options},
        output=output,
        in_channels=FEATURES[1],
        out_channels=7,
        feature_size=FEATURES[2:],
        output_size=OUTPUT_SIZE,
        task="demo",
    )


@pytest.mark.parametrize(("name", "output"), sorted(VALID))
def test_head_output_shapes_and_gradients(name: str, output: str) -> None:
    head = make_head(name, output)
    features = torch.randn(*FEATURES, requires_grad=True)
    out = head(features)
    assert out.shape == EXPECTED[output]
    out.square().mean().backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert features.grad is not None and features.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "output"), sorted(set(COMBINATIONS) - VALID))
def test_build_head_rejects_wrong_output_kind(name: str, output: str) -> None:
    capable = [head for head in HEADS if (head, output) in VALID]
    with pytest.raises(ConfigError) as info:
        make_head(name, output)
    message = str(info.value)
    assert f"task 'demo' needs a '{output}' output" in message
    assert f"head '{name}'" in message
    assert f"heads that can: {', '.join(capable)}" in message


def test_build_head_accepts_omegaconf_and_passes_geometry() -> None:
    spec = OmegaConf.create({"name": "lstm", "hidden_size": 5})
    head = build_head(spec, output="sequence", in_channels=8, out_channels=3, feature_size=(3, 5), output_size=(12, 20))
    assert isinstance(head, LSTMHead)
    assert (head.mode, head.feature_height, head.hidden_size) == ("sequence", 3, 5)
    last = make_head("lstm", "vector")
    assert last.mode == "last"
    dense = make_head("dense", "map")
    assert isinstance(dense, DenseHead) and dense.output_size == OUTPUT_SIZE
    assert isinstance(make_head("pooled", "vector"), PooledHead)


def test_build_head_rejects_unknown_head() -> None:
    with pytest.raises(ConfigError, match=r"task 'demo'.*'conv'.*dense, pooled, lstm"):
        build_head(
            {"name": "conv"},
            output="map",
            in_channels=8,
            out_channels=7,
            feature_size=(3, 5),
            output_size=OUTPUT_SIZE,
            task="demo",
        )


def test_build_head_rejects_unknown_and_fixed_options() -> None:
    with pytest.raises(ConfigError) as info:
        make_head("pooled", "vector", hiden_channels=4)
    message = str(info.value)
    assert "task 'demo'" in message and "head 'pooled'" in message and "hiden_channels" in message
    assert "accepted options: hidden_channels, pool, dropout" in message

    with pytest.raises(ConfigError, match=r"\['mode'\] set automatically.*hidden_size"):
        make_head("lstm", "sequence", mode="last")


def test_build_head_rejects_invalid_option_values() -> None:
    with pytest.raises(ConfigError, match=r"task 'demo', head 'pooled'.*pool='median'.*'avg', 'max'"):
        make_head("pooled", "vector", pool="median")
    with pytest.raises(ConfigError, match=r"task 'demo', head 'dense'.*hidden_channels"):
        make_head("dense", "map", hidden_channels="wide")


@pytest.mark.parametrize(
    ("name", "output", "feature_size", "pattern"),
    [
        ("dense", "map", (0, 4), "degenerate"),
        ("pooled", "vector", (2, 0), "degenerate"),
        ("lstm", "sequence", (2, 1), "at least 2 columns"),
    ],
)
def test_build_head_rejects_degenerate_features(
    name: str, output: str, feature_size: tuple[int, int], pattern: str
) -> None:
    with pytest.raises(ConfigError, match=rf"task 'demo', head '{name}'.*{pattern}"):
        build_head(
            {"name": name},
            output=output,
            in_channels=8,
            out_channels=7,
            feature_size=feature_size,
            output_size=OUTPUT_SIZE,
            task="demo",
        )


def test_lstm_vector_accepts_single_column() -> None:
    head = build_head(
        {"name": "lstm", "hidden_size": 4, "conv_channels": 4},
        output="vector",
        in_channels=8,
        out_channels=3,
        feature_size=(2, 1),
        output_size=OUTPUT_SIZE,
    )
    assert head(torch.randn(2, 8, 2, 1)).shape == (2, 3)


def test_lstm_rejects_feature_height_mismatch() -> None:
    head = make_head("lstm", "sequence")
    with pytest.raises(ConfigError, match=r"height 3 but got height 4.*encoder"):
        head(torch.randn(2, 8, 4, 5))


def _lstm_inputs(head: LSTMHead, features: torch.Tensor) -> torch.Tensor:
    """The per-step sequence fed to the LSTM (captured with a hook)."""
    captured = []
    handle = head.lstm.register_forward_hook(lambda module, args, out: captured.append(args[0]))
    try:
        head(features)
    finally:
        handle.remove()
    return captured[0]


def test_lstm_time_steps_follow_columns_left_to_right() -> None:
    head = make_head("lstm", "sequence", num_layers=1).eval()
    width = FEATURES[3]
    base = torch.randn(*FEATURES)
    reference = _lstm_inputs(head, base)
    assert reference.shape[1] == width
    for column in (0, width - 1):
        perturbed = base.clone()
        perturbed[..., column] += 5.0
        changed = (_lstm_inputs(head, perturbed) - reference).abs().amax(dim=(0, 2)) > 1e-6
        # conv3x3 spreads a column to its neighbours only: steps within distance 1 change, the others do not.
        expected = torch.tensor([abs(step - column) <= 1 for step in range(width)])
        assert torch.equal(changed, expected), (column, changed)


def test_lstm_sequence_is_bidirectional_and_last_uses_both_directions() -> None:
    head = make_head("lstm", "sequence", num_layers=1).eval()
    base = torch.randn(*FEATURES)
    perturbed = base.clone()
    perturbed[..., -1] += 5.0
    with torch.no_grad():
        delta = (head(perturbed) - head(base)).abs().amax(dim=(0, 2))
    assert delta[0] > 1e-6, "the first step must see the last column (backward direction)"

    last = make_head("lstm", "vector", num_layers=2).eval()
    captured = []
    last.lstm.register_forward_hook(lambda module, args, out: captured.append(out[0]))
    with torch.no_grad():
        out = last(base)
    steps, hidden = captured[0], last.hidden_size
    expected = last.classifier(torch.cat([steps[:, -1, :hidden], steps[:, 0, hidden:]], dim=1))
    torch.testing.assert_close(out, expected)
