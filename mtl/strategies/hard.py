"""Hard parameter sharing (Caruana 1997): one encoder for all tasks, one head per task."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtl.strategies.base import EncoderFactory, SharingStrategy
from mtl.tasks import Task


class HardSharing(SharingStrategy):
    """One shared encoder whose feature map feeds every task's head; ``z`` is the shared feature map."""

    def __init__(self, encoder: EncoderFactory, tasks: Mapping[str, Task], input_shape: tuple[int, int, int]):
        super().__init__(tasks, input_shape)
        self.encoder = encoder()
        self.heads = self.build_heads(self.encoder, tasks)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        return {name: head(z) for name, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        return list(self.heads[name].parameters())
