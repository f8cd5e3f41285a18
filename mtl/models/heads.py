"""Task heads: each reads the encoder's BxCxhxw feature map and produces one task's prediction.

``build_head`` turns a config spec ``{"name": ..., **options}`` into a head, checking that the head can
produce the kind of output the task needs ("map", "vector" or "sequence") and that the options exist.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.errors import ConfigError
from mtl.models.encoders import check_positive_int, conv_bn_relu


def _check_size(value: Sequence[int], name: str, owner: str) -> tuple[int, int]:
    """Return ``value`` as an (H, W) pair of positive ints, else raise a ConfigError."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{owner}: {name} must be a pair (H, W) of positive integers, got {value!r}")
    return check_positive_int(value[0], name, owner), check_positive_int(value[1], name, owner)


class DenseHead(nn.Module):
    """Per-pixel head (segmentation, depth, normals): convs at feature resolution, a light upsampling decoder,
    a 1x1 classifier, then a bilinear resize to ``output_size``.

    Each of the ``upsample_steps`` doubles the resolution and halves the channels (at least 16), so object
    boundaries are drawn at 2× the feature resolution (by default) for a small cost.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        output_size: tuple[int, int],
        hidden_channels: int = 64,
        num_blocks: int = 1,
        upsample_steps: int = 1,
    ) -> None:
        super().__init__()
        owner = "DenseHead"
        check_positive_int(in_channels, "in_channels", owner)
        check_positive_int(out_channels, "out_channels", owner)
        check_positive_int(hidden_channels, "hidden_channels", owner)
        for name, value in (("num_blocks", num_blocks), ("upsample_steps", upsample_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{owner}: {name} must be an integer >= 0, got {value!r}")
        self.output_size = _check_size(output_size, "output_size", owner)
        channels = [in_channels] + [hidden_channels] * num_blocks
        self.blocks = nn.Sequential(*(conv_bn_relu(a, b) for a, b in itertools.pairwise(channels)))
        decoder: list[nn.Module] = []
        width = channels[-1]
        for _ in range(upsample_steps):
            decoder += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
            decoder += [conv_bn_relu(width, max(width // 2, 16))]
            width = max(width // 2, 16)
        self.decoder = nn.Sequential(*decoder)
        self.classifier = nn.Conv2d(width, out_channels, kernel_size=1)

    def forward(self, features: Tensor) -> Tensor:
        logits = self.classifier(self.decoder(self.blocks(features)))
        if tuple(logits.shape[-2:]) == self.output_size:
            return logits
        return F.interpolate(logits, size=self.output_size, mode="bilinear", align_corners=False)


class PooledHead(nn.Module):
    """Image-level head (classification, regression, multilabel): conv, global pool, 2-layer MLP → Bxout."""

    POOLS = ("avg", "max")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 128,
        pool: str = "avg",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = "PooledHead"
        check_positive_int(in_channels, "in_channels", owner)
        check_positive_int(out_channels, "out_channels", owner)
        check_positive_int(hidden_channels, "hidden_channels", owner)
        if pool not in self.POOLS:
            raise ConfigError(f"{owner}: pool={pool!r} is not one of {list(self.POOLS)}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{owner}: dropout must be a number in [0, 1), got {dropout!r}")
        self.conv = conv_bn_relu(in_channels, hidden_channels)
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_channels, out_channels),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(self.pool(self.conv(features)).flatten(1))


class LSTMHead(nn.Module):
    """CRNN-style head: each feature-map column (left→right) is one time step of a bidirectional LSTM.

    The height is collapsed by flattening ``conv_channels x feature_height`` per column and projecting it to
    ``hidden_size``. ``mode="sequence"`` gives per-step logits BxTxout (T = feature width, e.g. for CTC);
    ``mode="last"`` classifies from the last forward and last backward hidden states → Bxout.
    """

    MODES = ("sequence", "last")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        feature_height: int,
        mode: str = "sequence",
        hidden_size: int = 128,
        num_layers: int = 1,
        conv_channels: int = 64,
    ) -> None:
        super().__init__()
        owner = "LSTMHead"
        check_positive_int(in_channels, "in_channels", owner)
        check_positive_int(out_channels, "out_channels", owner)
        check_positive_int(feature_height, "feature_height", owner)
        check_positive_int(hidden_size, "hidden_size", owner)
        check_positive_int(num_layers, "num_layers", owner)
        check_positive_int(conv_channels, "conv_channels", owner)
        if mode not in self.MODES:
            raise ConfigError(f"{owner}: mode={mode!r} is not one of {list(self.MODES)}")
        self.mode = mode
        self.feature_height = feature_height
        self.hidden_size = hidden_size
        self.conv = conv_bn_relu(in_channels, conv_channels)
        self.project = nn.Linear(conv_channels * feature_height, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden_size, out_channels)

    def forward(self, features: Tensor) -> Tensor:
        if features.shape[-2] != self.feature_height:
            raise ConfigError(
                f"LSTMHead was built for feature maps of height {self.feature_height} but got height "
                f"{features.shape[-2]} (input {tuple(features.shape)}): the encoder/input size changed after "
                "the head was built; rebuild the head from the encoder's actual feature size"
            )
        x = self.conv(features)
        batch, channels, height, width = x.shape
        steps = x.permute(0, 3, 1, 2).reshape(batch, width, channels * height)
        outputs, (h_n, _) = self.lstm(self.project(steps))
        if self.mode == "sequence":
            return self.classifier(outputs)
        return self.classifier(torch.cat([h_n[-2], h_n[-1]], dim=1))


HEADS: dict[str, type[nn.Module]] = {"dense": DenseHead, "pooled": PooledHead, "lstm": LSTMHead}
HEAD_OUTPUTS: dict[str, tuple[str, ...]] = {
    "dense": ("map",),
    "pooled": ("vector",),
    "lstm": ("vector", "sequence"),
}
OUTPUT_KINDS = ("map", "vector", "sequence")


def _geometry(name: str, output: str, feature_size: tuple[int, int], output_size: tuple[int, int]) -> dict:
    """The constructor arguments ``build_head`` derives from the task and the encoder, per head."""
    if name == "dense":
        return {"output_size": tuple(output_size)}
    if name == "lstm":
        return {"feature_height": feature_size[0], "mode": "sequence" if output == "sequence" else "last"}
    return {}


def build_head(
    spec: Mapping[str, Any],
    *,
    output: str,
    in_channels: int,
    out_channels: int,
    feature_size: tuple[int, int],
    output_size: tuple[int, int],
    task: str = "?",
) -> nn.Module:
    """Build the head ``spec["name"]`` for ``task``, which needs an ``output`` of kind map/vector/sequence.

    ``feature_size`` is the encoder's (h, w) feature-map size, ``output_size`` the task's (H, W) target size.
    Geometry arguments are filled in here; the remaining spec entries are passed as options.
    """
    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"task '{task}': head must be a mapping like {{name: dense, ...}}, got {spec!r}")
    options = dict(spec)
    name = options.pop("name", None)
    if name not in HEADS:
        raise ConfigError(f"task '{task}': unknown head {name!r}; accepted heads: {', '.join(HEADS)}")
    if output not in OUTPUT_KINDS:
        raise ConfigError(f"task '{task}': unknown output kind {output!r}; accepted: {list(OUTPUT_KINDS)}")
    if output not in HEAD_OUTPUTS[name]:
        capable = [head for head, outputs in HEAD_OUTPUTS.items() if output in outputs]
        raise ConfigError(
            f"task '{task}' needs a '{output}' output; head '{name}' produces {HEAD_OUTPUTS[name]}; "
            f"heads that can: {', '.join(capable)}"
        )
    height, width = (int(s) for s in feature_size)
    if height < 1 or width < 1:
        raise ConfigError(
            f"task '{task}', head '{name}': the encoder's feature map is degenerate ({height}x{width}); "
            "use a larger input or an encoder with fewer downsampling stages"
        )
    if output == "sequence" and width < 2:
        raise ConfigError(
            f"task '{task}', head '{name}': a 'sequence' output needs a feature map at least 2 columns wide "
            f"(one time step per column), got width {width}; use a wider input or less downsampling"
        )

    cls = HEADS[name]
    derived = {"in_channels": in_channels, "out_channels": out_channels}
    derived.update(_geometry(name, output, (height, width), output_size))
    parameters = list(inspect.signature(cls.__init__).parameters)[1:]
    accepted = [p for p in parameters if p not in derived]
    unknown = [key for key in options if key not in accepted]
    if unknown:
        problems = []
        if fixed := [key for key in unknown if key in derived]:
            problems.append(f"{fixed} set automatically from the task and encoder")
        if other := [key for key in unknown if key not in derived]:
            problems.append(f"unknown option(s) {other}")
        raise ConfigError(
            f"task '{task}', head '{name}': {'; '.join(problems)}; accepted options: {', '.join(accepted)}"
        )
    try:
        return cls(**derived, **options)
    except (ConfigError, TypeError, ValueError) as error:
        raise ConfigError(
            f"task '{task}', head '{name}': invalid option(s) {options}: {error}; "
            f"accepted options: {', '.join(accepted)}"
        ) from error
