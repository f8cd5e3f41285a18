"""Multi-Task Attention Network (Liu, Johns & Davison, CVPR 2019): a shared encoder and per-task soft attention."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.models.encoders import conv_bn_relu
from mtl.strategies.base import EncoderFactory, SharingStrategy, encoder_stages, run_stages
from mtl.tasks import Task


def attention_mask(in_channels: int, channels: int) -> nn.Sequential:
    """The paper's attention block g: conv1x1-BN-ReLU, conv1x1-BN-sigmoid → a mask in (0, 1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=1),
        nn.BatchNorm2d(channels),
        nn.Sigmoid(),
    )


class MTAN(SharingStrategy):
    """A shared encoder; every task attends to every stage's output with its own soft mask.

    At stage s with shared output ``u_s``, task k computes ``a = g_k,s([u_s, f_s(â_{s-1})])`` and keeps
    ``â_s = a ⊙ u_s``; ``f_s`` (max-pool to ``u_s``'s size, then conv3x3-BN-ReLU) brings the previous attended
    features to stage s, and stage 0 uses ``g_k,0(u_0)``. Task k's head reads ``â`` of the last stage.
    Adapted to generic stages: the reference code feeds g from an inner layer of the stage (generic stages
    expose none, so g reads the stage output), and pools before its f conv rather than after (4× cheaper).
    Shared: the encoder and the f layers (as in the reference, f is common to all tasks). Task-owned: the
    task's attention blocks g and its head. Needs an encoder exposing ``stages``.
    """

    def __init__(self, encoder: EncoderFactory, tasks: Mapping[str, Task], input_shape: tuple[int, int, int]):
        super().__init__(tasks, input_shape)
        self.encoder = encoder()
        channels = encoder_stages(self.encoder, "mtan")[1]
        inputs = [channels[0]] + [2 * width for width in channels[1:]]
        self.attention = nn.ModuleDict(
            {name: nn.ModuleList(attention_mask(i, c) for i, c in zip(inputs, channels, strict=True)) for name in tasks}
        )
        self.bridges = nn.ModuleList(conv_bn_relu(a, b) for a, b in itertools.pairwise(channels))
        self.heads = self.build_heads(self.encoder, tasks)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        shared = run_stages(self.encoder.stages, x)
        return self.apply_heads({name: self.attend(masks, shared) for name, masks in self.attention.items()})

    def attend(self, masks: nn.ModuleList, shared: list[Tensor]) -> Tensor:
        """One task's attended features of the last stage, from every stage's shared output."""
        attended = masks[0](shared[0]) * shared[0]
        for mask, bridge, features in zip(masks[1:], self.bridges, shared[1:], strict=True):
            previous = bridge(F.adaptive_max_pool2d(attended, features.shape[-2:]))
            attended = mask(torch.cat([features, previous], dim=1)) * features
        return attended

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        return [*self.attention[name].parameters(), *self.heads[name].parameters()]
