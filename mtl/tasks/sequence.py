"""Sequence recognition (head output B×T×C): CTC over ``num_symbols`` symbols plus the blank (index 0)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from mtl.tasks.base import Task, check_int, check_layout, iterate_targets
from mtl.tasks.metrics import SequenceError, SequenceExactMatch, greedy_decode, target_sequences

__all__ = ["SequenceTask", "ctc_path", "greedy_decode"]


def ctc_path(sequence: list[int], steps: int) -> list[int]:
    """The shortest per-step labelling of ``steps`` steps that greedy-decodes to ``sequence``.

    A blank separates repeated symbols (otherwise decoding would merge them); the rest is blank.
    """
    path: list[int] = []
    for i, symbol in enumerate(sequence):
        if i > 0 and symbol == sequence[i - 1]:
            path.append(0)
        path.append(symbol)
    if len(path) > steps:
        raise ValueError(f"{steps} time steps cannot encode the sequence {sequence} (needs {len(path)})")
    return path + [0] * (steps - len(path))


class SequenceTask(Task):
    """Sequence recognition trained with CTC and decoded greedily (best path).

    Prediction: logits B×T×(num_symbols + 1), index 0 = blank. Target: int64 B×L holding symbols
    1..num_symbols, padded at the end with 0; its length is the number of non-zero entries.
    """

    output = "sequence"
    default_head = {"name": "lstm"}
    PEAK_LOGIT = 10.0

    def __init__(self, name: str, num_symbols: int, weight: float = 1.0, head: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, weight, head)
        self.num_symbols = check_int(num_symbols, f"task '{name}': num_symbols", minimum=1)

    @property
    def out_channels(self) -> int:
        return self.num_symbols + 1

    def _repr_options(self) -> dict[str, Any]:
        return {"num_symbols": self.num_symbols}

    def _target_lengths(self, target: Tensor, steps: int) -> Tensor:
        """Lengths of the padded targets, checking the padding and that ``steps`` can hold them."""
        nonzero = target != 0
        lengths = nonzero.sum(dim=1)
        if bool((nonzero[:, 1:] & ~nonzero[:, :-1]).any()):
            raise ValueError(f"task '{self.name}': target padding (0) must only appear at the end of a row")
        longest = int(lengths.max()) if len(lengths) else 0
        if steps < longest:
            raise ValueError(
                f"task '{self.name}': the head outputs {steps} time steps but a target has {longest} "
                "symbols; CTC needs at least as many steps as symbols (more for repeated symbols)"
            )
        return lengths

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """CTC loss (blank 0), each sequence's loss divided by its length, averaged over the batch.

        Infeasible alignments (too few steps for the repeats) give 0 rather than inf.
        """
        check_layout(self.name, pred, target, "B T C", "B L", C=self.out_channels)
        steps = pred.shape[1]
        target_lengths = self._target_lengths(target, steps)
        log_probs = F.log_softmax(pred.float(), dim=-1).transpose(0, 1)
        input_lengths = torch.full((pred.shape[0],), steps, dtype=torch.long, device=pred.device)
        return F.ctc_loss(
            log_probs, target, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=True
        )

    def metrics(self) -> torchmetrics.MetricCollection:
        return torchmetrics.MetricCollection(
            {
                "exact_match": SequenceExactMatch(),
                "edit_distance": SequenceError("edit_distance"),
                "symbol_error_rate": SequenceError("symbol_error_rate"),
            }
        )

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """Logits T×C (T = ``steps``, required) that greedy-decode to the most common target sequence.

        Ties go to the sequence seen first.
        """
        if steps is None:
            raise ValueError(f"task '{self.name}': constant_prediction needs the number of time steps")
        counts: Counter[tuple[int, ...]] = Counter()
        for target in iterate_targets(targets, self.name):
            counts.update(tuple(sequence) for sequence in target_sequences(target))
        sequence, _ = counts.most_common(1)[0]
        path = torch.tensor(ctc_path(list(sequence), steps))
        return F.one_hot(path, self.out_channels).float() * self.PEAK_LOGIT
