"""Metrics torchmetrics does not provide in the form the tasks need.

Every state is a sum (totals, counts, histograms) reduced with ``dist_reduce_fx="sum"``, so a metric
computed over several batches or processes equals the metric on the concatenated evaluation set.
Metrics that read the same states (e.g. all normal-angle statistics) derive from one states class,
so ``MetricCollection``'s compute groups update those states once per batch.
A metric with nothing to average (no valid pixel, no sequence) computes to NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MultilabelAccuracy, MultilabelF1Score
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError


def depth_valid(target: Tensor) -> Tensor:
    """Valid depth pixels: a depth <= 0 marks a missing measurement."""
    return target > 0


def normal_valid(target: Tensor) -> Tensor:
    """Valid normal pixels (B×H×W) of a B×3×H×W target: an all-zero vector marks a missing normal."""
    return target.ne(0).any(dim=1)


def channel_norm(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean norm over dim 1 of a B×C×H×W tensor (as a sum of squares: ``linalg.norm`` over the channel
    dimension is ~50× slower on CPU for channels-first maps)."""
    return x.mul(x).sum(dim=1).add(eps).sqrt()


def unit_channels(x: Tensor) -> Tensor:
    """``x`` scaled to unit length over dim 1 (a zero vector stays zero)."""
    return x / channel_norm(x).unsqueeze(1)


def normal_angles(pred: Tensor, target: Tensor) -> Tensor:
    """Angles in degrees (B×H×W) between predicted and target normals, both normalised first.

    Uses 2·atan2(|a−b|, |a+b|), which unlike acos(a·b) stays accurate for small angles;
    a zero prediction is at 90° from everything.
    """
    a = unit_channels(pred.float())
    b = unit_channels(target.float())
    return torch.rad2deg(2 * torch.atan2(channel_norm(a - b, eps=0.0), channel_norm(a + b, eps=0.0)))


def greedy_decode(pred: Tensor) -> list[list[int]]:
    """Best-path CTC decoding of B×T×C logits: argmax per step, collapse repeats, drop blanks (0)."""
    best = pred.detach().argmax(dim=-1)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=-1)
    keep = (best != 0) & (best != previous)
    best, keep = best.cpu(), keep.cpu()
    return [row[mask].tolist() for row, mask in zip(best, keep, strict=True)]


def target_sequences(target: Tensor) -> list[list[int]]:
    """The symbol lists of a B×L target padded with 0 (padding only at the end)."""
    target = target.detach().cpu()
    return [row[row != 0].tolist() for row in target]


def levenshtein(source: list[int], target: list[int]) -> int:
    """Minimum number of insertions, deletions and substitutions turning ``source`` into ``target``."""
    previous = list(range(len(target) + 1))
    for i, symbol in enumerate(source, start=1):
        current = [i]
        for j, other in enumerate(target, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (symbol != other)))
        previous = current
    return previous[-1]


class DepthError(Metric):
    """Mean absolute (``"abs"``) or relative (``"rel"``, |p−t|/t) depth error over all valid pixels."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, statistic: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if statistic not in ("abs", "rel"):
            raise ValueError(f"DepthError statistic must be 'abs' or 'rel', got {statistic!r}")
        self.statistic = statistic
        self.add_state("abs_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("rel_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = depth_valid(target)
        error = (pred.detach().float() - target.float()).abs()[valid]
        self.abs_sum += error.sum().double()
        self.rel_sum += (error / target.float()[valid]).sum().double()
        self.count += valid.sum()

    def compute(self) -> Tensor:
        total = self.abs_sum if self.statistic == "abs" else self.rel_sum
        return (total / self.count).float()


class _NormalAngleStates(Metric):
    """Sums over all valid pixels of the angle between predicted and target normals.

    Keeps the angle sum and count (for the mean), a histogram of ``BIN_DEGREES``-wide bins over
    [0, 180] degrees (for the median) and exact counts of angles strictly below each of ``THRESHOLDS``.
    All subclasses share these states, so a collection updates them once.
    """

    THRESHOLDS = (11.25, 22.5, 30.0)
    BIN_DEGREES = 0.01
    NUM_BINS = 18000

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("angle_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("histogram", torch.zeros(self.NUM_BINS, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("within", torch.zeros(len(self.THRESHOLDS), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        angles = normal_angles(pred.detach(), target)[normal_valid(target)]
        self.angle_sum += angles.sum().double()
        self.count += angles.numel()
        bins = (angles / self.BIN_DEGREES).long().clamp(0, self.NUM_BINS - 1)
        self.histogram += torch.bincount(bins, minlength=self.NUM_BINS)
        thresholds = torch.tensor(self.THRESHOLDS, device=angles.device)
        self.within += (angles[:, None] < thresholds).sum(dim=0)


class NormalAngleError(_NormalAngleStates):
    """Mean or median angle error in degrees.

    The median is the centre of the histogram bin holding the lower median, so it is exact to within
    half a bin (0.005 degrees).
    """

    higher_is_better = False

    def __init__(self, statistic: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if statistic not in ("mean", "median"):
            raise ValueError(f"NormalAngleError statistic must be 'mean' or 'median', got {statistic!r}")
        self.statistic = statistic

    def compute(self) -> Tensor:
        if self.statistic == "mean":
            return (self.angle_sum / self.count).float()
        if self.count == 0:
            return torch.tensor(float("nan"), device=self.count.device)
        lower_median_rank = (self.count + 1) // 2
        index = torch.searchsorted(self.histogram.cumsum(0), lower_median_rank)
        return (index.float() + 0.5) * self.BIN_DEGREES


class NormalAngleWithin(_NormalAngleStates):
    """Percent of valid pixels whose angle error is strictly below ``threshold`` degrees."""

    higher_is_better = True

    def __init__(self, threshold: float, **kwargs) -> None:
        super().__init__(**kwargs)
        if threshold not in self.THRESHOLDS:
            raise ValueError(f"NormalAngleWithin threshold must be one of {self.THRESHOLDS}, got {threshold!r}")
        self.index = self.THRESHOLDS.index(threshold)

    def compute(self) -> Tensor:
        return 100.0 * self.within[self.index].float() / self.count


class _SequenceStates(Metric):
    """Totals of greedy-decoded sequences (B×T×C CTC logits) against B×L targets padded with 0.

    All subclasses share these states, so a collection decodes each batch once.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for state in ("edits", "exact", "sequences", "symbols"):
            self.add_state(state, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        edits = exact = symbols = 0
        for decoded, expected in zip(greedy_decode(pred), target_sequences(target), strict=True):
            edits += levenshtein(decoded, expected)
            exact += decoded == expected
            symbols += len(expected)
        self.edits += edits
        self.exact += exact
        self.symbols += symbols
        self.sequences += len(target)


class SequenceExactMatch(_SequenceStates):
    """Percent of sequences decoded exactly."""

    higher_is_better = True

    def compute(self) -> Tensor:
        return 100.0 * self.exact.float() / self.sequences


class SequenceError(_SequenceStates):
    """``"edit_distance"``: mean Levenshtein distance per sequence; ``"symbol_error_rate"``: total edits
    over total target symbols, in percent."""

    higher_is_better = False

    def __init__(self, statistic: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if statistic not in ("edit_distance", "symbol_error_rate"):
            raise ValueError(f"SequenceError statistic must be edit_distance or symbol_error_rate, got {statistic!r}")
        self.statistic = statistic

    def compute(self) -> Tensor:
        if self.statistic == "edit_distance":
            return self.edits.float() / self.sequences
        return 100.0 * self.edits.float() / self.symbols


class MultilabelAccuracyFromLogits(MultilabelAccuracy):
    """MultilabelAccuracy on logits.

    torchmetrics applies a sigmoid only when some value lies outside [0, 1], so logits that happen to
    lie inside it would be thresholded as probabilities; applying the sigmoid here avoids that.
    """

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds.detach().sigmoid(), target.long())


class MultilabelMacroF1FromLogits(MultilabelF1Score):
    """Macro F1 over labels, on logits (see ``MultilabelAccuracyFromLogits``).

    torchmetrics scores a label that is neither present nor predicted as 0 in the multilabel macro
    average (unlike the multiclass one, which leaves such classes out); here such labels are left
    out, so a perfect prediction scores 1.
    """

    def __init__(self, num_labels: int, **kwargs) -> None:
        super().__init__(num_labels=num_labels, average="none", **kwargs)

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds.detach().sigmoid(), target.long())

    def compute(self) -> Tensor:
        tp, fp, fn = self.tp.float(), self.fp.float(), self.fn.float()
        present = tp + fp + fn > 0
        return (2 * tp[present] / (2 * tp + fp + fn)[present]).mean()


class MeanAbsoluteErrorAnyShape(MeanAbsoluteError):
    """MAE over all elements of any (matching) shape; a B target is accepted for a B×1 prediction.

    Flattening with ``reshape`` also accepts non-contiguous inputs (e.g. an expanded constant prediction),
    which torchmetrics' ``view`` rejects.
    """

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds.detach().reshape(-1), target.reshape(-1))


class RootMeanSquaredErrorAnyShape(MeanSquaredError):
    """RMSE over all elements; see ``MeanAbsoluteErrorAnyShape``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(squared=False, **kwargs)

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds.detach().reshape(-1), target.reshape(-1))
