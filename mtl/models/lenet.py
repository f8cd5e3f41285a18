"""The LeNet-style shared network of Sener & Koltun (2018) for MultiMNIST (``MultiLeNetR``), as an Encoder.

Stages: conv5×5(10) → max-pool → ReLU; conv5×5(20) → channel dropout → max-pool → ReLU; then their 320 → 50
fully connected layer, written as a conv whose kernel covers the whole 4×4 map of a 28×28 input (so the
feature map is 50×1×1 and pooled heads apply; larger inputs give a larger map instead of a shape error).
Their task heads (50 → 50 → 10 with dropout) correspond to pooled heads with ``hidden_channels: 50``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mtl.errors import ConfigError
from mtl.models.encoders import Encoder, check_positive_int
from mtl.models.segnet import check_widths

LENET_WIDTHS = (10, 20, 50)


class LeNet(Encoder):
    """Three stages of ``widths`` channels (default 10, 20, 50); ``dropout`` is the channel dropout rate."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = LENET_WIDTHS, dropout: float = 0.5) -> None:
        check_positive_int(in_channels, "in_channels", "LeNet")
        first, second, fc = widths = check_widths(widths, "LeNet (conv, conv, fc)", count=3)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"LeNet: dropout must be a number in [0, 1), got {dropout!r}")
        stages = [
            nn.Sequential(nn.Conv2d(in_channels, first, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(inplace=True)),
            nn.Sequential(
                nn.Conv2d(first, second, kernel_size=5), nn.Dropout2d(dropout), nn.MaxPool2d(2), nn.ReLU(inplace=True)
            ),
            nn.Sequential(nn.Conv2d(second, fc, kernel_size=4), nn.ReLU(inplace=True)),
        ]
        super().__init__(stages, widths)
