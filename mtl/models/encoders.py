"""Shared encoders: CNNs exposed as an ordered list of stages.

Every encoder is an :class:`Encoder` whose ``stages`` run in order, so soft-sharing strategies (cross-stitch,
MTAN, ...) can interleave their own modules between stages. Hydra builds encoders with ``_partial_: true``;
each call of that partial constructs a fresh module with its own parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from mtl.errors import ConfigError


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """The conv3x3-BN-ReLU block every encoder and head is built from (bias dropped: BN adds one)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def check_positive_int(value: object, name: str, owner: str) -> int:
    """Return ``value`` if it is a positive int, else raise a ConfigError naming ``owner.name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return value


class Encoder(nn.Module):
    """Base: a CNN made of ``stages`` run in order; stage ``i`` outputs ``stage_channels[i]`` channels."""

    stages: nn.ModuleList
    stage_channels: list[int]

    def __init__(self, stages: Sequence[nn.Module], stage_channels: Sequence[int]) -> None:
        super().__init__()
        if len(stages) == 0 or len(stages) != len(stage_channels):
            raise ConfigError(
                f"{type(self).__name__}: needs at least one stage and one channel count per stage, "
                f"got {len(stages)} stages and stage_channels={list(stage_channels)}"
            )
        self.stages = nn.ModuleList(stages)
        self.stage_channels = [int(c) for c in stage_channels]

    @property
    def out_channels(self) -> int:
        """Channels of the final feature map (what heads receive)."""
        return self.stage_channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def feature_size(self, input_shape: Sequence[int]) -> tuple[int, int]:
        """Height and width of the final feature map for inputs of shape (C, H, W) (see :func:`feature_shape`)."""
        return feature_shape(self, input_shape)[1:]


@torch.no_grad()
def feature_shape(encoder: nn.Module, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """C, h, w of the feature map any ``encoder`` makes from one ``input_shape`` (C, H, W) image.

    A dry run in eval mode without gradients, so BatchNorm statistics are untouched and a batch of one works;
    an encoder that cannot take the input, or shrinks it to nothing, is a ConfigError saying so.
    """
    name = type(encoder).__name__
    if len(input_shape) != 3:
        raise ConfigError(f"{name}: input shape must be (C, H, W), got {tuple(input_shape)}")
    param = next(encoder.parameters(), None)
    was_training = encoder.training
    encoder.eval()
    try:
        features = encoder(torch.zeros(1, *input_shape, device=param.device if param is not None else None))
    except RuntimeError as error:
        raise ConfigError(
            f"encoder {name} cannot process inputs of shape {tuple(input_shape)} (C, H, W): {error}"
        ) from error
    finally:
        encoder.train(was_training)
    if features.dim() != 4 or min(features.shape[2:]) < 1:
        raise ConfigError(
            f"encoder {name} turns inputs of shape {tuple(input_shape)} into features of shape "
            f"{tuple(features.shape[1:])}; heads need a C×h×w feature map with h, w >= 1 "
            "(use larger images or an encoder with fewer downsampling stages)"
        )
    return tuple(int(size) for size in features.shape[1:])


class SmallCNN(Encoder):
    """A light CNN: one stage per entry of ``widths``; each stage halves H and W once, in its first block.

    ``downsample="stride"`` makes the first conv of a stage stride 2; ``"maxpool"`` puts a 2x2 max-pool
    before it.
    """

    DOWNSAMPLE = ("stride", "maxpool")

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        blocks_per_stage: int = 2,
        downsample: str = "stride",
    ) -> None:
        owner = "SmallCNN"
        check_positive_int(in_channels, "in_channels", owner)
        check_positive_int(blocks_per_stage, "blocks_per_stage", owner)
        widths = list(widths)
        if not widths:
            raise ConfigError(f"{owner}: widths must list at least one stage width, got []")
        for width in widths:
            check_positive_int(width, "every entry of widths", owner)
        if downsample not in self.DOWNSAMPLE:
            raise ConfigError(f"{owner}: downsample={downsample!r} is not one of {list(self.DOWNSAMPLE)}")

        stages: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            blocks: list[nn.Module] = []
            if downsample == "maxpool":
                blocks.append(nn.MaxPool2d(2))
            blocks.append(conv_bn_relu(previous, width, stride=2 if downsample == "stride" else 1))
            blocks.extend(conv_bn_relu(width, width) for _ in range(blocks_per_stage - 1))
            stages.append(nn.Sequential(*blocks))
            previous = width
        super().__init__(stages, widths)


RESNET_DEPTHS: dict[int, tuple[str, str]] = {
    18: ("resnet18", "ResNet18_Weights"),
    34: ("resnet34", "ResNet34_Weights"),
    50: ("resnet50", "ResNet50_Weights"),
}


def resolve_resnet_weights(depth: int, weights: str | None) -> WeightsEnum | None:
    """Turn a weights name ("DEFAULT", "IMAGENET1K_V1" or "ResNet18_Weights.IMAGENET1K_V1") into the enum.

    Only resolves the name: nothing is downloaded here.
    """
    if weights is None:
        return None
    enum_name = RESNET_DEPTHS[depth][1]
    enum = getattr(torchvision.models, enum_name)
    accepted = [*enum.__members__]
    name = str(weights)
    if name.startswith(f"{enum_name}."):
        name = name[len(enum_name) + 1 :]
    if name not in enum.__members__:
        raise ConfigError(
            f"ResNetEncoder(depth={depth}): unknown weights {weights!r}; accepted: null (random init) or "
            f"one of {accepted} (optionally prefixed with '{enum_name}.')"
        )
    return enum[name]


class ResNetEncoder(Encoder):
    """A torchvision ResNet without avgpool/fc, as 4 stages: stem+layer1, layer2, layer3, layer4 (stride 32).

    ``weights`` names torchvision weights (loaded, possibly downloaded, only when given). With
    ``in_channels != 3`` conv1 is replaced; if weights were loaded its kernel is initialised from the RGB
    kernel's channel mean so the pretrained filters still respond to intensity.
    """

    def __init__(self, depth: int = 18, weights: str | None = None, in_channels: int = 3) -> None:
        if depth not in RESNET_DEPTHS:
            raise ConfigError(f"ResNetEncoder: depth={depth!r} is not supported; accepted: {list(RESNET_DEPTHS)}")
        check_positive_int(in_channels, "in_channels", "ResNetEncoder")
        resolved = resolve_resnet_weights(depth, weights)
        builder = getattr(torchvision.models, RESNET_DEPTHS[depth][0])
        net = builder(weights=resolved)
        if in_channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
            if resolved is not None:
                with torch.no_grad():
                    mean = old.weight.mean(dim=1, keepdim=True)
                    net.conv1.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        expansion = type(net.layer1[0]).expansion
        stage_channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
        super().__init__([stem, net.layer2, net.layer3, net.layer4], stage_channels)
        self.depth = depth
