"""Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): expert encoders mixed by one softmax gate per task."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtl.models.encoders import check_positive_int
from mtl.strategies.base import EncoderFactory, SharingStrategy
from mtl.strategies.gating import Gate, gate_diagnostics, mix
from mtl.tasks import Task


class MMoE(SharingStrategy):
    """``num_experts`` encoder copies (experts); task k's head reads ``Σ_e g_k(x)_e · expert_e(x)``.

    Each gate ``g_k`` is a softmax over experts computed from the input image (average-pooled to
    ``gate_pool``×``gate_pool``, then one linear layer). Shared: the experts. Task-owned: the task's gate and
    head. Works with any encoder (experts are whole encoders). ``diagnostics()`` gives the batch-mean gate
    weights ``gate/<task>/expert<e>`` of the last forward pass.
    """

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        input_shape: tuple[int, int, int],
        num_experts: int = 3,
        gate_pool: int = 4,
    ) -> None:
        super().__init__(tasks, input_shape)
        check_positive_int(num_experts, "num_experts", "MMoE")
        self.experts = nn.ModuleList(encoder() for _ in range(num_experts))
        self.gates = nn.ModuleDict({name: Gate(input_shape[0], num_experts, gate_pool, "MMoE") for name in tasks})
        self.heads = self.build_heads(self.experts[0], tasks)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = [expert(x) for expert in self.experts]
        return self.apply_heads({name: mix(gate(x), features) for name, gate in self.gates.items()})

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        return [*self.gates[name].parameters(), *self.heads[name].parameters()]

    def diagnostics(self) -> dict[str, float]:
        names = [f"expert{e}" for e in range(len(self.experts))]
        logs: dict[str, float] = {}
        for task, gate in self.gates.items():
            logs.update(gate_diagnostics(f"gate/{task}", gate, names))
        return logs
