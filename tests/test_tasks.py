"""Tasks: losses and metrics on hand-computed values, whole-set accumulation, trivial baselines, errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor

from mtl.errors import ConfigError
from mtl.tasks import (
    ClassificationTask,
    DepthTask,
    MultilabelTask,
    NormalTask,
    RegressionTask,
    SegmentationTask,
    SequenceTask,
    Task,
    greedy_decode,
)
from mtl.tasks.metrics import levenshtein
from mtl.tasks.sequence import ctc_path

LOG = math.log


def compute(task: Task, *batches: tuple[Tensor, Tensor]) -> dict[str, float]:
    """Metric values of ``task`` accumulated over the (pred, target) batches."""
    collection = task.metrics()
    for pred, target in batches:
        collection.update(pred, target)
    return {name: value.item() for name, value in collection.compute().items()}


def one_hot_logits(labels: Tensor, num_classes: int, dim: int) -> Tensor:
    """Logits whose argmax along ``dim`` is ``labels``."""
    return F.one_hot(labels, num_classes).float().movedim(-1, dim) * 5.0


def unit_normals(angles_deg: list[float]) -> tuple[Tensor, Tensor]:
    """Predictions (1×3×1×N, scaled by 3 to check normalisation) at the given angles from target (0, 0, 1)."""
    radians = torch.deg2rad(torch.tensor(angles_deg, dtype=torch.float64))
    pred = torch.stack([radians.sin(), torch.zeros_like(radians), radians.cos()]).float()
    target = torch.zeros(3, len(angles_deg))
    target[2] = 1.0
    return (3 * pred)[None, :, None, :], target[None, :, None, :]


# ----------------------------------------------------------------------------------------------------- losses


def test_segmentation_loss_is_cross_entropy_over_labelled_pixels() -> None:
    task = SegmentationTask("seg", num_classes=2)
    pred = torch.tensor([[0.0, LOG(3.0)]] * 3).T.reshape(1, 2, 1, 3)  # p(class 1) = 3/4 at every pixel
    target = torch.tensor([[[1, 0, -1]]])
    assert task.loss(pred, target).item() == pytest.approx((-LOG(0.75) - LOG(0.25)) / 2)


def test_segmentation_loss_with_no_labelled_pixel_is_zero_not_nan() -> None:
    task = SegmentationTask("seg", num_classes=3)
    pred = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = task.loss(pred, torch.full((2, 4, 4), -1))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))


def test_depth_loss_is_l1_over_valid_pixels_only() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    target = torch.tensor([2.0, 0.0, 5.0, -1.0]).reshape(1, 1, 2, 2)
    assert DepthTask("depth").loss(pred, target).item() == pytest.approx(1.5)


def test_normal_loss_is_one_minus_cosine_and_ignores_zero_targets() -> None:
    task = NormalTask("normal")
    pred, target = unit_normals([0.0, 90.0, 180.0])
    assert task.loss(pred[..., :1], target[..., :1]).item() == pytest.approx(0.0, abs=1e-6)
    assert task.loss(pred[..., 1:2], target[..., 1:2]).item() == pytest.approx(1.0, abs=1e-6)
    assert task.loss(pred[..., 2:], target[..., 2:]).item() == pytest.approx(2.0, abs=1e-6)
    target[..., 1:] = 0.0  # only the parallel pixel stays valid
    assert task.loss(pred, target).item() == pytest.approx(0.0, abs=1e-6)


def test_ctc_loss_is_near_zero_for_a_peaked_correct_path_and_large_for_a_wrong_one() -> None:
    task = SequenceTask("seq", num_symbols=3)
    target = torch.tensor([[1, 1, 2, 0]])
    right = F.one_hot(torch.tensor([ctc_path([1, 1, 2], 6)]), 4).float() * 20
    wrong = F.one_hot(torch.tensor([ctc_path([3, 3], 6)]), 4).float() * 20
    assert task.loss(right, target).item() < 1e-3
    assert task.loss(wrong, target).item() > 5


def test_ctc_loss_rejects_too_few_steps_and_padding_inside_a_target() -> None:
    task = SequenceTask("seq", num_symbols=3)
    with pytest.raises(ValueError, match=r"task 'seq'.*2 time steps.*3 symbols"):
        task.loss(torch.randn(1, 2, 4), torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="padding"):
        task.loss(torch.randn(1, 5, 4), torch.tensor([[1, 0, 3]]))


def test_vector_losses() -> None:
    logits = torch.tensor([[0.0, LOG(3.0)]])
    assert ClassificationTask("c", 2).loss(logits, torch.tensor([1])).item() == pytest.approx(-LOG(0.75))
    smoothed = ClassificationTask("c", 2, label_smoothing=0.2).loss(logits, torch.tensor([1])).item()
    assert smoothed == pytest.approx(-0.9 * LOG(0.75) - 0.1 * LOG(0.25))
    bce = MultilabelTask("m", 2).loss(torch.zeros(3, 2), torch.tensor([[0, 1], [1, 1], [0, 0]])).item()
    assert bce == pytest.approx(LOG(2.0))
    pred = torch.tensor([[1.0], [2.0], [4.0]])
    target = torch.tensor([2.0, 2.0, 2.0])  # a B target for a B×1 prediction
    assert RegressionTask("r").loss(pred, target).item() == pytest.approx(1.0)
    assert RegressionTask("r", loss="mse").loss(pred, target[:, None]).item() == pytest.approx(5 / 3)


def test_losses_reject_wrong_layouts_with_the_expected_one() -> None:
    with pytest.raises(ValueError, match=r"task 'seg'.*B C H W.*C=5.*\(2, 4, 8, 8\)"):
        SegmentationTask("seg", 5).loss(torch.randn(2, 4, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="task 'depth'"):
        DepthTask("depth").loss(torch.randn(2, 1, 8, 8), torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="task 'r'"):
        RegressionTask("r", out_dim=2).loss(torch.randn(3, 2), torch.randn(3))


# ---------------------------------------------------------------------------------------- metrics, one batch


def test_miou_and_pixel_accuracy_on_a_hand_made_case() -> None:
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: fn 1 -> 0; class 3 absent
    # from both -> left out (counting it as 0 would give 1/4). The ignored pixel (predicted 2) counts nowhere.
    target = torch.tensor([[[0, 0, 1, 1, 2, -1]]])
    predicted = torch.tensor([[[0, 1, 1, 1, 0, 2]]])
    values = compute(SegmentationTask("seg", 4), (one_hot_logits(predicted, 4, dim=1), target))
    assert values["miou"] == pytest.approx(1 / 3)
    assert values["pixel_acc"] == pytest.approx(3 / 5)


def test_depth_errors_on_known_values() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    target = torch.tensor([2.0, 0.0, 5.0, 4.0]).reshape(1, 1, 1, 4)
    values = compute(DepthTask("depth"), (pred, target))
    assert values["abs_err"] == pytest.approx(1.0)
    assert values["rel_err"] == pytest.approx((1 / 2 + 2 / 5) / 3)


def test_normal_angle_statistics_on_known_angles() -> None:
    pred, target = unit_normals([5.0, 15.0, 25.0, 40.0, 90.0, 60.0])
    target[..., -1] = 0.0  # the 60° pixel is invalid
    values = compute(NormalTask("normal"), (pred, target))
    assert values["angle_mean"] == pytest.approx(35.0, abs=1e-3)
    assert values["angle_median"] == pytest.approx(25.0, abs=0.01)
    assert values["within_11_25"] == pytest.approx(20.0)
    assert values["within_22_5"] == pytest.approx(40.0)
    assert values["within_30"] == pytest.approx(60.0)


def test_small_normal_angles_are_resolved() -> None:
    pred, target = unit_normals([0.02, 0.02, 0.5])
    values = compute(NormalTask("normal"), (pred, target))
    assert values["angle_median"] == pytest.approx(0.02, abs=0.006)
    assert values["angle_mean"] == pytest.approx(0.18, abs=1e-3)


def test_classification_accuracy_and_macro_f1_leave_out_absent_classes() -> None:
    # class 0: F1 1; class 1: tp 1, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 2/3; class 3 absent (would give 7/12)
    target = torch.tensor([0, 1, 2, 2])
    values = compute(ClassificationTask("c", 4), (one_hot_logits(torch.tensor([0, 1, 1, 2]), 4, dim=1), target))
    assert values["accuracy"] == pytest.approx(0.75)
    assert values["f1"] == pytest.approx(7 / 9)


def test_multilabel_metrics_read_logits_even_inside_zero_one() -> None:
    # All logits lie in [0, 1], where torchmetrics would read them as probabilities: logit 0.3 means
    # positive (sigmoid > 0.5), probability 0.3 negative; logit 0 is negative (sigmoid 0.5 is not > 0.5).
    pred = torch.tensor([[0.3, 0.0, 0.0], [0.3, 0.3, 0.0]])
    target = torch.tensor([[1, 0, 0], [1, 0, 0]])
    values = compute(MultilabelTask("m", 3), (pred, target))
    assert values["accuracy"] == pytest.approx(5 / 6)
    assert values["f1"] == pytest.approx((1.0 + 0.0) / 2)  # label 2: never present nor predicted, left out


def test_regression_metrics_accept_a_flat_target() -> None:
    values = compute(RegressionTask("r"), (torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([2.0, 2.0, 5.0])))
    assert values["mae"] == pytest.approx(1.0)
    assert values["rmse"] == pytest.approx(math.sqrt(5 / 3))


def test_greedy_decode_collapses_repeats_and_drops_blanks() -> None:
    path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [3, 3, 3, 3, 3, 3, 3, 3]])
    assert greedy_decode(one_hot_logits(path, 4, dim=-1)) == [[1, 1, 2], [], [3]]


def test_levenshtein_distance() -> None:
    kitten, sitting = [1, 2, 3, 3, 4, 5], [6, 2, 3, 3, 2, 5, 7]
    assert levenshtein(kitten, sitting) == 3
    assert levenshtein([], [1, 2]) == 2 and levenshtein([1, 2], []) == 2 and levenshtein([4], [4]) == 0


def test_sequence_metrics_on_known_sequences() -> None:
    kitten, sitting = [1, 2, 3, 3, 4, 5], [6, 2, 3, 3, 2, 5, 7]
    pred = one_hot_logits(torch.tensor([ctc_path(kitten, 10)] * 2), 8, dim=-1)
    target = torch.tensor([[*kitten, 0], sitting])
    values = compute(SequenceTask("seq", 7), (pred, target))
    assert values["exact_match"] == pytest.approx(50.0)
    assert values["edit_distance"] == pytest.approx(3 / 2)
    assert values["symbol_error_rate"] == pytest.approx(100 * 3 / 13)


# ------------------------------------------------------------------------------ accumulation over batches


def test_depth_error_is_over_all_pixels_not_a_mean_of_batch_means() -> None:
    first = (torch.full((1, 1, 1, 2), 5.0), torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2))  # 1 pixel, err 4
    second = (torch.ones(1, 1, 1, 3), torch.ones(1, 1, 1, 3))  # 3 pixels, error 0
    assert compute(DepthTask("depth"), first, second)["abs_err"] == pytest.approx(1.0)  # batch means: 2.0


def _normals(batch: int) -> Tensor:
    target = F.normalize(torch.randn(batch, 3, 5, 6), dim=1)
    return target * (torch.rand(batch, 1, 5, 6) > 0.3)


def _sequences(batch: int) -> Tensor:
    lengths = torch.randint(0, 5, (batch,))
    symbols = torch.randint(1, 4, (batch, 4))
    return symbols * (torch.arange(4) < lengths[:, None])


def _labels_with_ignored(batch: int) -> Tensor:
    labels = torch.randint(0, 4, (batch, 5, 6))
    return labels.masked_fill(torch.rand(batch, 5, 6) < 0.3, -1)


# task, prediction for a batch size, target for a batch size
CASES: dict[str, tuple[Task, Callable[[int], Tensor], Callable[[int], Tensor]]] = {
    "seg": (SegmentationTask("seg", 4), lambda b: torch.randn(b, 4, 5, 6), _labels_with_ignored),
    "depth": (DepthTask("depth"), lambda b: torch.rand(b, 1, 5, 6), lambda b: torch.rand(b, 1, 5, 6) - 0.3),
    "normal": (NormalTask("normal"), lambda b: torch.randn(b, 3, 5, 6), _normals),
    "class": (
        ClassificationTask("class", 3),
        lambda b: torch.randn(b, 3),
        lambda b: torch.randint(0, 3, (b,)),
    ),
    "multi": (MultilabelTask("multi", 3), lambda b: torch.randn(b, 3), lambda b: torch.randint(0, 2, (b, 3))),
    "regr": (RegressionTask("regr", 2), lambda b: torch.randn(b, 2), lambda b: torch.randn(b, 2)),
    "seq": (SequenceTask("seq", 3), lambda b: torch.randn(b, 6, 4), _sequences),
}


@pytest.mark.parametrize("case", CASES)
def test_metrics_over_two_batches_equal_metrics_on_their_concatenation(case: str) -> None:
    task, make_pred, make_target = CASES[case]
    torch.manual_seed(0)
    batches = [(make_pred(size), make_target(size)) for size in (1, 7)]
    together = (torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    accumulated, whole = compute(task, *batches), compute(task, together)
    assert accumulated == pytest.approx(whole, rel=1e-5, abs=1e-5)
    per_batch = [compute(task, batch) for batch in batches]
    batch_means = {name: sum(values[name] for values in per_batch) / 2 for name in whole}
    assert batch_means != pytest.approx(whole, rel=1e-5, abs=1e-5)  # the case separates the two


# -------------------------------------------------------------------------------- constant predictions


def _score_constant(task: Task, targets: list[Tensor], steps: int | None = None) -> tuple[Tensor, dict]:
    constant = task.constant_prediction(iter(targets), steps=steps)
    batches = [(constant.expand(len(t), *constant.shape), t) for t in targets]  # as the trainer feeds it
    return constant, compute(task, *batches)


def test_segmentation_constant_is_the_majority_pixel_class() -> None:
    targets = [torch.tensor([[[2, 2, -1], [0, 1, 2]]]), torch.tensor([[[1, 1, 1], [-1, -1, 1]]])]
    constant, values = _score_constant(SegmentationTask("seg", 3), targets)
    assert constant.shape == (3, 2, 3) and torch.equal(constant.argmax(0), torch.ones(2, 3, dtype=torch.long))
    assert values["pixel_acc"] == pytest.approx(5 / 9)
    assert values["miou"] == pytest.approx((5 / 9) / 3)


def test_depth_constant_is_the_mean_valid_depth() -> None:
    targets = [torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[2.0, 6.0]]], [[[3.0, -1.0]]]])]
    constant, values = _score_constant(DepthTask("depth"), targets)
    assert constant.shape == (1, 1, 2) and torch.allclose(constant, torch.full((1, 1, 2), 3.0))
    assert values["abs_err"] == pytest.approx((2 + 1 + 3 + 0) / 4)


def test_normal_constant_is_the_normalised_mean_normal() -> None:
    up, side = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0])
    zero = torch.zeros(3)
    targets = [torch.stack(pair, dim=1).reshape(1, 3, 1, 2) for pair in ((up, up), (side, zero), (zero, up))]
    constant, values = _score_constant(NormalTask("normal"), targets)
    expected = F.normalize(torch.tensor([1.0, 0.0, 3.0]), dim=0)
    assert constant.shape == (3, 1, 2) and torch.allclose(constant[:, 0, 0], expected)
    small, large = math.degrees(math.atan(1 / 3)), math.degrees(math.atan(3))
    assert values["angle_mean"] == pytest.approx((3 * small + large) / 4, abs=1e-3)
    assert values["within_30"] == pytest.approx(75.0)


def test_vector_constants_are_majorities_and_means() -> None:
    constant, values = _score_constant(ClassificationTask("c", 3), [torch.tensor([0, 2]), torch.tensor([2, 1, 2])])
    assert constant.argmax().item() == 2 and values["accuracy"] == pytest.approx(3 / 5)
    targets = [torch.tensor([[1, 0, 0], [1, 1, 0]]), torch.tensor([[0, 1, 0]])]
    constant, values = _score_constant(MultilabelTask("m", 3), targets)
    assert (constant > 0).tolist() == [True, True, False] and values["accuracy"] == pytest.approx(7 / 9)
    constant, values = _score_constant(RegressionTask("r"), [torch.tensor([1.0, 2.0]), torch.tensor([6.0])])
    assert constant.tolist() == pytest.approx([3.0]) and values["mae"] == pytest.approx(2.0)


def test_sequence_constant_decodes_to_the_most_common_sequence() -> None:
    targets = [torch.tensor([[1, 1, 2], [3, 0, 0]]), torch.tensor([[1, 1, 2], [2, 0, 0], [1, 1, 2]])]
    task = SequenceTask("seq", 3)
    constant, values = _score_constant(task, targets, steps=5)
    assert constant.shape == (5, 4) and greedy_decode(constant[None]) == [[1, 1, 2]]
    assert values["exact_match"] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="time steps"):
        task.constant_prediction(targets)
    with pytest.raises(ValueError, match="cannot encode"):
        task.constant_prediction(targets, steps=3)  # 1, blank, 1, 2 needs 4


def test_constant_prediction_needs_targets() -> None:
    with pytest.raises(ValueError, match="at least one batch"):
        DepthTask("depth").constant_prediction([])


# ------------------------------------------------------------------------------------ contract and config


@pytest.mark.parametrize("case", CASES)
def test_contract_of_every_task(case: str) -> None:
    task = CASES[case][0]
    assert set(task.higher_is_better) == set(task.metrics().keys())
    assert task.metrics() is not task.metrics()
    assert task.output in ("map", "vector", "sequence") and task.out_channels >= 1
    assert f"name='{case}'" in repr(task) and "weight=1.0" in repr(task)


def test_directions_of_metrics() -> None:
    assert NormalTask("n").higher_is_better == {
        "angle_mean": False,
        "angle_median": False,
        "within_11_25": True,
        "within_22_5": True,
        "within_30": True,
    }
    assert SequenceTask("s", 2).higher_is_better == {
        "exact_match": True,
        "edit_distance": False,
        "symbol_error_rate": False,
    }


def test_built_from_config_with_a_plain_dict_head() -> None:
    spec = {"_target_": "mtl.tasks.SegmentationTask", "name": "seg", "num_classes": 5, "weight": 2.0}
    spec["head"] = {"name": "dense", "hidden_channels": 64}
    task = instantiate(OmegaConf.create(spec))
    assert type(task.head) is dict and task.head == {"name": "dense", "hidden_channels": 64}
    assert task.weight == 2.0 and task.out_channels == 5 and task.output == "map"
    assert SequenceTask("s", 2, head=OmegaConf.create({"hidden": 8})).head == {"name": "lstm", "hidden": 8}
    assert ClassificationTask("c", 2).head == {"name": "pooled"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DepthTask("depth", weight=-1.0), r"task 'depth': weight must be .* >= 0.0, got -1.0"),
        (lambda: DepthTask(""), "non-empty string"),
        (lambda: SegmentationTask("seg", num_classes=1), r"task 'seg': num_classes must be an integer >= 2"),
        (lambda: SegmentationTask("seg", 5, ignore_index=3), r"ignore_index.*outside.*\[0, 5\).*got 3"),
        (lambda: ClassificationTask("c", True), "num_classes"),
        (lambda: ClassificationTask("c", 3, label_smoothing=1.0), r"label_smoothing.*\[0.0, 1.0\)"),
        (lambda: MultilabelTask("m", 0), "num_labels"),
        (lambda: RegressionTask("r", loss="huber"), r"loss must be one of \['l1', 'mse'\], got 'huber'"),
        (lambda: RegressionTask("r", out_dim=0), "out_dim"),
        (lambda: SequenceTask("s", 0), "num_symbols"),
        (lambda: SequenceTask("s", 3, head="lstm"), "head must be a mapping"),
        (lambda: DepthTask("d", weight=float("nan")), "finite"),
    ],
)
def test_invalid_arguments_raise_config_error(build: Callable[[], Task], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()
