"""SegNet (Badrinarayanan et al. 2017) as the shared network of mtan (Liu et al. 2019) and Nash-MTL on NYUv2 and
CityScapes, exposed as an :class:`~mtl.models.encoders.Encoder` of 2 × L stages.

mtan's ``SegNet`` (``im2im_pred/model_segnet_*.py``, filters 64-128-256-512-512) is a VGG-16-like encoder
(2, 2, 3, 3, 3 conv-BN-ReLU layers per level, each level ending in a 2×2 max-pool) and a mirrored decoder
(max-unpooling with the encoder's pooling indices, then 3, 3, 3, 2, 2 layers) shared by all tasks; only the
final conv layers are task-specific. Here the whole encoder-decoder is the "encoder": the first L stages go down,
the last L come back up, and the final stage outputs ``widths[0]`` channels at input resolution, so dense heads
with ``upsample_steps: 0`` play the part of mtan's task layers. Soft-sharing strategies see all 2 × L stages,
as mtan's attention modules do.

The unpooling indices cannot travel through ``stage(x)``, so each down stage stores its indices and input size
on the encoder and the matching up stage reads them: stages must run in order within one forward pass, which
every strategy does.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from mtl.errors import ConfigError
from mtl.models.encoders import Encoder, check_positive_int, conv_bn_relu

SEGNET_WIDTHS = (64, 128, 256, 512, 512)


def check_widths(widths: Sequence[int], owner: str, count: int | None = None) -> list[int]:
    """``widths`` as a list of positive ints (exactly ``count`` of them when given), else a ConfigError."""
    widths = list(widths)
    if not widths or (count is not None and len(widths) != count):
        wanted = f"exactly {count}" if count is not None else "at least one"
        raise ConfigError(f"{owner}: widths must list {wanted} stage width(s), got {widths}")
    for width in widths:
        check_positive_int(width, "every entry of widths", owner)
    return widths


def _convs(in_channels: int, out_channels: int, count: int) -> list[nn.Module]:
    return [conv_bn_relu(in_channels if i == 0 else out_channels, out_channels) for i in range(count)]


class _Pools:
    """Pooling indices and pre-pool sizes of the current forward pass, one slot per level."""

    def __init__(self, levels: int) -> None:
        self.indices: list[Tensor | None] = [None] * levels
        self.sizes: list[tuple[int, int] | None] = [None] * levels


class _PoolStage(nn.Module):
    """A stage of conv layers at one SegNet level that shares the level's pooling slot with its mirror stage."""

    def __init__(self, convs: list[nn.Module], level: int, pools: _Pools) -> None:
        super().__init__()
        self.convs = nn.Sequential(*convs)
        self.level = level
        self.pools = pools


class _Down(_PoolStage):
    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        self.pools.sizes[self.level] = (x.shape[-2], x.shape[-1])
        x, self.pools.indices[self.level] = F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)
        return x


class _Up(_PoolStage):
    def forward(self, x: Tensor) -> Tensor:
        indices, size = self.pools.indices[self.level], self.pools.sizes[self.level]
        if indices is None or indices.shape != x.shape:
            raise RuntimeError(
                f"SegNet up stage {self.level} has no pooling indices matching its input {tuple(x.shape)}: "
                "run the encoder's stages in order within one forward pass"
            )
        return self.convs(F.max_unpool2d(x, indices, kernel_size=2, stride=2, output_size=size))


class SegNet(Encoder):
    """mtan's SegNet encoder-decoder; ``widths`` are the per-level filters (default 64-128-256-512-512)."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = SEGNET_WIDTHS) -> None:
        check_positive_int(in_channels, "in_channels", "SegNet")
        widths = check_widths(widths, "SegNet")
        levels = len(widths)
        pools = _Pools(levels)
        depth = [2 if level < 2 else 3 for level in range(levels)]
        down = [
            _Down(_convs(in_channels if level == 0 else widths[level - 1], widths[level], depth[level]), level, pools)
            for level in range(levels)
        ]
        up_channels = [widths[max(level - 1, 0)] for level in range(levels)]
        up = [
            _Up(_convs(widths[level], up_channels[level], depth[level]), level, pools)
            for level in reversed(range(levels))
        ]
        super().__init__([*down, *up], [*widths, *reversed(up_channels)])
        self.pools = pools
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)
