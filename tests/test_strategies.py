"""Every strategy in conf/strategy: output shapes per task kind, gradient flow, exact parameter partition."""

from __future__ import annotations

import pytest
import torch

from mtl.errors import ConfigError
from mtl.train import build
from tests.conftest import TINY, compose_config, options

STRATEGIES = options("strategy")


def build_strategy(name: str, extra: list[str] | None = None):
    cfg = compose_config([*TINY, f"strategy={name}", *(extra or [])])
    return build(cfg)


@pytest.mark.parametrize("name", STRATEGIES)
def test_outputs_have_the_shape_each_task_needs(name: str) -> None:
    parts = build_strategy(name)
    images, targets = next(iter(parts.data.train_loader()))
    predictions = parts.strategy(images)
    assert set(predictions) == set(parts.tasks)
    batch, _, height, width = images.shape
    assert predictions["seg"].shape == (batch, 5, height, width)
    assert predictions["depth"].shape == (batch, 1, height, width)
    assert predictions["normal"].shape == (batch, 3, height, width)
    assert predictions["count"].shape == (batch, parts.tasks["count"].num_classes)
    sequence = predictions["sequence"]
    assert sequence.shape[0] == batch and sequence.shape[2] == 5
    assert sequence.shape[1] >= targets["sequence"].shape[1]


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("count_head", ["pooled", "lstm"])
def test_gradients_reach_every_parameter(name: str, count_head: str) -> None:
    parts = build_strategy(name, [f"tasks.count.head.name={count_head}"])
    images, targets = next(iter(parts.data.train_loader()))
    predictions = parts.strategy(images)
    loss = sum(task.loss(predictions[key], targets[key]) for key, task in parts.tasks.items())
    loss.backward()
    missing = [key for key, p in parts.strategy.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("name", STRATEGIES)
def test_shared_and_task_parameters_partition_all_parameters(name: str) -> None:
    strategy = build_strategy(name).strategy
    groups = [strategy.shared_parameters()] + [strategy.task_parameters(task) for task in strategy.task_names]
    seen = [id(p) for group in groups for p in group]
    assert len(seen) == len(set(seen)), "a parameter is listed twice"
    assert set(seen) == {id(p) for p in strategy.parameters()}


def test_hard_sharing_shares_the_encoder_and_splits_into_encode_decode() -> None:
    strategy = build_strategy("hard").strategy
    assert strategy.supports_rep_mode
    shared = {id(p) for p in strategy.shared_parameters()}
    assert shared == {id(p) for p in strategy.encoder.parameters()}
    x = torch.randn(2, *strategy.input_shape)
    direct, split = strategy(x), strategy.decode(strategy.encode(x))
    for key in direct:
        torch.testing.assert_close(direct[key], split[key])


def test_independent_shares_nothing_and_refuses_rep_mode() -> None:
    strategy = build_strategy("independent").strategy
    assert strategy.shared_parameters() == []
    assert not strategy.supports_rep_mode
    with pytest.raises(ConfigError, match="no shared representation"):
        strategy.encode(torch.randn(1, *strategy.input_shape))


def test_independent_tasks_do_not_influence_each_other() -> None:
    strategy = build_strategy("independent").strategy
    x = torch.randn(2, *strategy.input_shape)
    strategy(x)["seg"].sum().backward()
    for name in strategy.task_names:
        grads = [p.grad for p in strategy.task_parameters(name)]
        if name == "seg":
            assert all(g is not None for g in grads)
        else:
            assert all(g is None for g in grads)


def test_encoder_too_deep_for_the_image_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="sequence"):
        build_strategy("hard", ["encoder.widths=[8,8,8,8,8,8]"])
