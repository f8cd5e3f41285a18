"""A user-defined sharing strategy, written outside the mtl package: the worked example of docs/strategies.md.

Run it from the repository root (any directory works once ``my_strategy`` is importable):

    PYTHONPATH=docs/examples mtl-train strategy._target_=my_strategy.MyStrategy

tests/test_strategy_example.py runs exactly this command, so this example cannot rot.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.strategies import SharingStrategy, encoder_stages
from mtl.strategies.base import EncoderFactory
from mtl.tasks import Task


class MyStrategy(SharingStrategy):
    """A branched network: the first encoder stages are shared, each task has its own copy of the last
    ``private_stages`` stages (as in branched multi-task networks, Vandenhende et al., BMVC 2020).

    Shared: the trunk. Task-owned: the task's branch and head. ``encode``/``decode`` split at the trunk's
    output, so gradient methods can also run with ``weighting.mode=rep``.
    """

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        input_shape: tuple[int, int, int],
        private_stages: int = 1,
    ) -> None:
        super().__init__(tasks, input_shape)
        stages, _ = encoder_stages(encoder(), "MyStrategy")
        if not isinstance(private_stages, int) or not 1 <= private_stages <= len(stages):
            raise ConfigError(
                f"MyStrategy: private_stages must be an integer in [1, {len(stages)}] (the encoder has "
                f"{len(stages)} stages), got {private_stages!r}"
            )
        split = len(stages) - private_stages
        self.trunk = nn.Sequential(*stages[:split])
        self.branches = nn.ModuleDict(
            {name: nn.Sequential(*encoder_stages(encoder(), "MyStrategy")[0][split:]) for name in tasks}
        )
        self.heads = self.build_heads(nn.Sequential(self.trunk, next(iter(self.branches.values()))), tasks)

    def encode(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        return self.apply_heads({name: branch(z) for name, branch in self.branches.items()})

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        return [*self.branches[name].parameters(), *self.heads[name].parameters()]
