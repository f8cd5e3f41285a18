"""Cross-stitch networks (Misra et al., CVPR 2016): one encoder per task, mixed linearly after every stage."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.strategies.base import EncoderFactory, SharingStrategy, encoder_stages
from mtl.tasks import Task


class CrossStitchUnit(nn.Module):
    """Mixes K task activations: ``out_k = Σ_j α[k, j] · in_j`` with a learnable K×K matrix (or one per channel).

    Initialised to ``alpha_same`` on the diagonal and ``(1 − alpha_same)/(K − 1)`` off it (1 for one task), so
    each task starts mostly from its own network, as in the paper.
    """

    def __init__(self, num_tasks: int, channels: int, alpha_same: float, per_channel: bool) -> None:
        super().__init__()
        off = (1.0 - alpha_same) / (num_tasks - 1) if num_tasks > 1 else 0.0
        same = alpha_same if num_tasks > 1 else 1.0
        alpha = torch.full((num_tasks, num_tasks), off).fill_diagonal_(same)
        if per_channel:
            alpha = alpha.unsqueeze(-1).repeat(1, 1, channels)
        self.alpha = nn.Parameter(alpha)
        self.per_channel = per_channel

    def forward(self, activations: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``activations``: task → B×C×h×w, in the task order the unit was built for."""
        stacked = torch.stack(list(activations.values()))
        equation = "kjc,jbchw->kbchw" if self.per_channel else "kj,jbchw->kbchw"
        mixed = torch.einsum(equation, self.alpha.to(stacked.dtype), stacked)
        return dict(zip(activations, mixed.unbind(0), strict=True))


class CrossStitch(SharingStrategy):
    """One encoder copy per task; after every encoder stage a cross-stitch unit mixes the K activations.

    Shared: every encoder copy and every unit (each task's loss reaches all copies through the units).
    Task-owned: the heads. Needs an encoder exposing ``stages``. ``per_channel`` learns one K×K matrix per
    channel instead of one per stage.
    """

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        input_shape: tuple[int, int, int],
        alpha_same: float = 0.9,
        per_channel: bool = False,
    ) -> None:
        super().__init__(tasks, input_shape)
        if isinstance(alpha_same, bool) or not isinstance(alpha_same, int | float) or not 0.0 <= alpha_same <= 1.0:
            raise ConfigError(f"CrossStitch: alpha_same must be a number in [0, 1], got {alpha_same!r}")
        copies = {name: encoder_stages(encoder(), "cross_stitch") for name in tasks}
        self.stages = nn.ModuleDict({name: stages for name, (stages, _) in copies.items()})
        channels = next(iter(copies.values()))[1]
        self.units = nn.ModuleList(
            CrossStitchUnit(len(tasks), width, float(alpha_same), per_channel) for width in channels
        )
        self.heads = self.build_heads(nn.Sequential(*next(iter(self.stages.values()))), tasks)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        activations = {name: x for name in self.task_names}
        for index, unit in enumerate(self.units):
            activations = unit({name: stages[index](activations[name]) for name, stages in self.stages.items()})
        return self.apply_heads(activations)

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        return list(self.heads[name].parameters())
