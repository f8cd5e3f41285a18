"""Independent single-task models in one run: the single-task-learning (STL) baseline of Δm%."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtl.strategies.base import EncoderFactory, SharingStrategy
from mtl.tasks import Task


class Independent(SharingStrategy):
    """One encoder and one head per task; nothing is shared, so every task trains as if alone."""

    def __init__(self, encoder: EncoderFactory, tasks: Mapping[str, Task], input_shape: tuple[int, int, int]):
        super().__init__(tasks, input_shape)
        self.encoders = nn.ModuleDict({name: encoder() for name in tasks})
        first = next(iter(self.encoders.values()))
        self.heads = self.build_heads(first, tasks)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.apply_heads({name: encoder(x) for name, encoder in self.encoders.items()})

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        return [*self.encoders[name].parameters(), *self.heads[name].parameters()]
