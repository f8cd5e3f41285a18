"""Softmax gates over experts, shared by MMoE and CGC/PLE: the gate network and the gate-weighted mixture."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl.models.encoders import check_positive_int


class Gate(nn.Module):
    """Expert weights from an input feature map: average-pool to ``pool``×``pool``, flatten, linear, softmax.

    The linear layer starts at zero, so every gate starts uniform and no expert is favoured by initialisation.
    ``last_mean`` keeps the batch-mean weights of the last forward pass (for :meth:`diagnostics`).
    """

    def __init__(self, in_channels: int, num_experts: int, pool: int, owner: str) -> None:
        super().__init__()
        check_positive_int(num_experts, "number of experts", owner)
        check_positive_int(pool, "gate_pool", owner)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.linear = nn.Linear(in_channels * pool * pool, num_experts)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.last_mean: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.linear(self.pool(x).flatten(1)), dim=1)
        self.last_mean = weights.detach().mean(dim=0)
        return weights


def mix(weights: Tensor, experts: Sequence[Tensor]) -> Tensor:
    """Per-sample weighted sum of expert feature maps: ``weights`` is B×E, each expert output B×C×h×w."""
    if weights.shape[1] != len(experts):
        raise ValueError(f"a gate gave {weights.shape[1]} weights for {len(experts)} experts")
    return torch.einsum("be,eb...->b...", weights.to(experts[0].dtype), torch.stack(list(experts)))


def gate_diagnostics(prefix: str, gate: Gate, expert_names: Sequence[str]) -> dict[str, float]:
    """``{f"{prefix}/{expert}": mean weight}`` from the gate's last forward pass (empty before the first)."""
    if gate.last_mean is None:
        return {}
    return {f"{prefix}/{name}": value for name, value in zip(expert_names, gate.last_mean.tolist(), strict=True)}
