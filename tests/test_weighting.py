"""The weighting base: equal weighting, per-task gradients, param/rep modes, and every yaml in conf/weighting."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from mtl.errors import ConfigError
from mtl.strategies.base import SharingStrategy
from mtl.weighting import EqualWeighting, GradientWeighting
from mtl.weighting.gradients import per_task_grads, set_flat_grad
from tests.conftest import compose_config, options

TASKS = ["a", "b", "c"]


class TwoLayer(SharingStrategy):
    """A linear trunk and one linear head per task: small enough to check gradients by hand."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.task_names = list(TASKS)
        self.input_shape = (4,)
        self.trunk = nn.Linear(4, 3)
        self.heads = nn.ModuleDict({name: nn.Linear(3, 1) for name in TASKS})

    def encode(self, x):
        return torch.tanh(self.trunk(x))

    def decode(self, z):
        return {name: head(z).squeeze(-1) for name, head in self.heads.items()}

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_parameters(self, name):
        return list(self.heads[name].parameters())


class SumAggregator(GradientWeighting):
    """Σ_k g_k: the gradient method that must reproduce equal weighting exactly."""

    def aggregate(self, grads):
        return grads.sum(0)


def losses_of(predictions, targets):
    return {name: ((predictions[name] - targets[name]) ** 2).mean() for name in TASKS}


def gradients_after(weighting, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = TwoLayer()
    x = torch.randn(8, 4)
    targets = {name: torch.randn(8) for name in TASKS}
    logs = weighting.backward(losses_of(weighting.predict(model, x), targets), model)
    assert all(isinstance(value, float) for value in logs.values())
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_equal_weighting_is_the_sum_of_losses() -> None:
    torch.manual_seed(0)
    model = TwoLayer()
    x, targets = torch.randn(8, 4), {name: torch.randn(8) for name in TASKS}
    sum(losses_of(model(x), targets).values()).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    actual = gradients_after(EqualWeighting(TASKS))
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])


def test_equal_weighting_logs_unit_weights() -> None:
    weighting = EqualWeighting(TASKS)
    model = TwoLayer()
    logs = weighting.backward(losses_of(model(torch.randn(2, 4)), {n: torch.zeros(2) for n in TASKS}), model)
    assert logs == {"weight/a": 1.0, "weight/b": 1.0, "weight/c": 1.0}


@pytest.mark.parametrize("mode", ["param", "rep"])
def test_sum_aggregation_reproduces_equal_weighting_in_both_modes(mode: str) -> None:
    expected = gradients_after(EqualWeighting(TASKS))
    actual = gradients_after(SumAggregator(TASKS, mode=mode))
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])


def test_per_task_grads_are_the_gradients_of_each_loss_alone() -> None:
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    losses = [(weight**2).sum(), (3 * weight).sum(), weight.prod()]
    grads = per_task_grads(losses, [weight])
    expected = torch.tensor([[2.0, 4.0], [3.0, 3.0], [2.0, 1.0]])
    torch.testing.assert_close(grads, expected)
    assert weight.grad is None


def test_set_flat_grad_checks_the_size() -> None:
    params = [nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(3))]
    set_flat_grad(params, torch.arange(7.0))
    torch.testing.assert_close(params[1].grad, torch.tensor([4.0, 5.0, 6.0]))
    with pytest.raises(ValueError, match="entries"):
        set_flat_grad(params, torch.arange(8.0))


def test_bad_mode_and_mismatched_tasks_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"weighting\.mode"):
        SumAggregator(TASKS, mode="both")
    with pytest.raises(ValueError, match="built for tasks"):
        EqualWeighting(TASKS).stack({"a": torch.tensor(1.0)})


@pytest.mark.parametrize("name", options("weighting"))
def test_every_weighting_yaml_builds_and_gives_finite_gradients(name: str) -> None:
    cfg = compose_config([f"weighting={name}"])
    weighting = instantiate(cfg.weighting, task_names=TASKS)
    grads = gradients_after(weighting)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())
