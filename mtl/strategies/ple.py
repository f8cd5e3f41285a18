"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE) (Tang et al., RecSys 2020).

Both mix shared experts and task-specific experts with one softmax gate per task. CGC is one extraction level
whose experts are whole encoders. PLE stacks levels: level ``l`` is stage ``l`` of the encoder (one expert = one
copy of that stage), so an encoder with S stages gives S levels; every level but the last also has a shared
gate over all experts, whose output is the input of the next level's shared experts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from mtl.models.encoders import check_positive_int
from mtl.strategies.base import EncoderFactory, SharingStrategy, encoder_stages
from mtl.strategies.gating import Gate, gate_diagnostics, mix
from mtl.tasks import Task


class ExtractionLevel(nn.Module):
    """One extraction network: shared experts, each task's own experts, one gate per task over its own and the
    shared experts, and (``with_shared_gate``) a shared gate over all experts for the next level."""

    def __init__(
        self,
        shared: Sequence[nn.Module],
        own: Mapping[str, Sequence[nn.Module]],
        in_channels: int,
        gate_pool: int,
        with_shared_gate: bool,
        owner: str,
    ) -> None:
        super().__init__()
        self.shared_experts = nn.ModuleList(shared)
        self.task_experts = nn.ModuleDict({name: nn.ModuleList(experts) for name, experts in own.items()})
        self.task_gates = nn.ModuleDict(
            {name: Gate(in_channels, len(experts) + len(shared), gate_pool, owner) for name, experts in own.items()}
        )
        total = len(shared) + sum(len(experts) for experts in own.values())
        self.shared_gate = Gate(in_channels, total, gate_pool, owner) if with_shared_gate else None

    def forward(self, task_inputs: Mapping[str, Tensor], shared_input: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Each task's gated output, and the shared gated output (``shared_input`` unchanged without a gate)."""
        shared = [expert(shared_input) for expert in self.shared_experts]
        own = {name: [expert(task_inputs[name]) for expert in experts] for name, experts in self.task_experts.items()}
        outputs = {name: mix(self.task_gates[name](task_inputs[name]), [*own[name], *shared]) for name in own}
        if self.shared_gate is None:
            return outputs, shared_input
        everything = [features for name in own for features in own[name]] + shared
        return outputs, mix(self.shared_gate(shared_input), everything)

    def diagnostics(self, level: int) -> dict[str, float]:
        """Mean gate weights ``gate/<task or shared>/level<l>/<owner><i>`` of the last forward pass."""
        shared = [f"shared{i}" for i in range(len(self.shared_experts))]
        own = {name: [f"{name}{i}" for i in range(len(experts))] for name, experts in self.task_experts.items()}
        logs: dict[str, float] = {}
        for name, gate in self.task_gates.items():
            logs.update(gate_diagnostics(f"gate/{name}/level{level}", gate, [*own[name], *shared]))
        if self.shared_gate is not None:
            everything = [label for labels in own.values() for label in labels] + shared
            logs.update(gate_diagnostics(f"gate/shared/level{level}", self.shared_gate, everything))
        return logs


class PLE(SharingStrategy):
    """Progressive Layered Extraction: one extraction level per encoder stage (see the module docstring).

    ``num_shared_experts`` shared and ``num_task_experts`` per-task experts per level; gates read their
    branch's level input (the image at level 0), average-pooled to ``gate_pool``×``gate_pool``. A parameter is
    shared when more than one task's loss reaches it: task k owns only its head, its experts and gate of the
    last level, and its gate of the level before (which feeds nothing but task k's last-level experts); the
    earlier levels' task experts feed the shared gate, hence every task. Needs an encoder exposing ``stages``.
    """

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        input_shape: tuple[int, int, int],
        num_shared_experts: int = 1,
        num_task_experts: int = 1,
        gate_pool: int = 4,
    ) -> None:
        super().__init__(tasks, input_shape)
        owner = type(self).__name__
        shared_count = check_positive_int(num_shared_experts, "num_shared_experts", owner)
        own_count = check_positive_int(num_task_experts, "num_task_experts", owner)
        copies = [encoder() for _ in range(shared_count + own_count * len(tasks))]
        levels, in_channels = self.split_into_levels(copies)
        self.levels = nn.ModuleList()
        for index, (experts, channels) in enumerate(zip(levels, in_channels, strict=True)):
            own = {
                name: experts[shared_count + k * own_count : shared_count + (k + 1) * own_count]
                for k, name in enumerate(tasks)
            }
            last = index == len(levels) - 1
            self.levels.append(ExtractionLevel(experts[:shared_count], own, channels, gate_pool, not last, owner))
        self.heads = self.build_heads(copies[0], tasks)

    def split_into_levels(self, copies: Sequence[nn.Module]) -> tuple[list[list[nn.Module]], list[int]]:
        """The experts of each level (level l = stage l of every copy) and each level's input channels."""
        stages = [encoder_stages(copy, "ple") for copy in copies]
        channels = stages[0][1]
        levels = [list(level) for level in zip(*(copy_stages for copy_stages, _ in stages), strict=True)]
        return levels, [self.input_shape[0], *channels[:-1]]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        task_inputs: Mapping[str, Tensor] = {name: x for name in self.task_names}
        shared = x
        for level in self.levels:
            task_inputs, shared = level(task_inputs, shared)
        return self.apply_heads(task_inputs)

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        last = self.levels[-1]
        owned = [self.heads[name], last.task_experts[name], last.task_gates[name]]
        if len(self.levels) > 1:
            owned.append(self.levels[-2].task_gates[name])
        return [p for module in owned for p in module.parameters()]

    def diagnostics(self) -> dict[str, float]:
        logs: dict[str, float] = {}
        for index, level in enumerate(self.levels):
            logs.update(level.diagnostics(index))
        return logs


class CGC(PLE):
    """Customized Gate Control: a single extraction level whose experts are whole encoder copies.

    Shared: the shared experts. Task-owned: the task's experts, gate and head. Works with any encoder.
    """

    def split_into_levels(self, copies: Sequence[nn.Module]) -> tuple[list[list[nn.Module]], list[int]]:
        return [list(copies)], [self.input_shape[0]]
