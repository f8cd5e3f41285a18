"""Every strategy in conf/strategy: output shapes per task kind, gradient flow, exact parameter partition."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException

from mtl.errors import ConfigError
from mtl.train import build, create
from tests.conftest import RESNET_TINY, TINY, compose_config, options

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


def reaching_tasks(strategy, images) -> dict[int, set[str]]:
    """For every parameter (by id): the tasks whose prediction depends on it, read off the autograd graph."""
    predictions = strategy(images)
    params = list(strategy.parameters())
    reached: dict[int, set[str]] = {id(p): set() for p in params}
    for name in strategy.task_names:
        grads = torch.autograd.grad(predictions[name].sum(), params, allow_unused=True, retain_graph=True)
        for param, grad in zip(params, grads, strict=True):
            if grad is not None:
                reached[id(param)].add(name)
    return reached


@pytest.mark.parametrize("name", STRATEGIES)
def test_task_parameters_are_reached_by_their_task_only_and_shared_ones_by_several(name: str) -> None:
    strategy = build_strategy(name).strategy
    reached = reaching_tasks(strategy, torch.randn(2, *strategy.input_shape))
    for task in strategy.task_names:
        owners = {frozenset(reached[id(p)]) for p in strategy.task_parameters(task)}
        assert owners == {frozenset({task})}, f"a parameter of task {task} is reached by {owners}"
    assert all(len(reached[id(p)]) >= 2 for p in strategy.shared_parameters())


def transplant_independent(target, source) -> None:
    """Copy an Independent strategy's per-task encoders and heads into a cross-stitch strategy."""
    for task in source.task_names:
        target.stages[task].load_state_dict(source.encoders[task].stages.state_dict())
    target.heads.load_state_dict(source.heads.state_dict())


def test_cross_stitch_with_identity_mixing_equals_independent_on_the_same_weights() -> None:
    independent = build_strategy("independent").strategy.eval()
    stitched = build_strategy("cross_stitch").strategy.eval()
    transplant_independent(stitched, independent)
    x = torch.randn(2, *independent.input_shape)
    expected = independent(x)
    mixed = stitched(x)
    assert not torch.allclose(mixed["seg"], expected["seg"]), "the default mixing should differ from identity"
    with torch.no_grad():
        for unit in stitched.units:
            unit.alpha.copy_(torch.eye(len(stitched.task_names)))
    actual = stitched(x)
    for task in expected:
        torch.testing.assert_close(actual[task], expected[task])


@pytest.mark.parametrize("per_channel", [False, True])
def test_cross_stitch_units_start_at_alpha_same_and_share_the_rest(per_channel: bool) -> None:
    strategy = build_strategy("cross_stitch", ["strategy.alpha_same=0.8", f"strategy.per_channel={per_channel}"])
    units = strategy.strategy.units
    assert [unit.alpha.shape[2:] for unit in units] == ([(8,), (16,)] if per_channel else [(), ()])
    alpha = units[0].alpha if not per_channel else units[0].alpha[..., 3]
    expected = torch.full((5, 5), 0.2 / 4).fill_diagonal_(0.8)
    torch.testing.assert_close(alpha.detach(), expected)


def test_mmoe_gates_sum_to_one_and_their_means_are_diagnostics() -> None:
    strategy = build_strategy("mmoe", ["strategy.num_experts=4"]).strategy
    assert strategy.diagnostics() == {}
    x = torch.randn(3, *strategy.input_shape)
    with torch.no_grad():
        strategy.gates["seg"].linear.bias.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    for gate in strategy.gates.values():
        weights = gate(x)
        assert weights.shape == (3, 4) and (weights >= 0).all()
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))
    strategy(x)
    logs = strategy.diagnostics()
    assert set(logs) == {f"gate/{task}/expert{e}" for task in strategy.task_names for e in range(4)}
    for task in strategy.task_names:
        assert sum(logs[f"gate/{task}/expert{e}"] for e in range(4)) == pytest.approx(1.0)
    assert logs["gate/seg/expert0"] > 0.8 and logs["gate/depth/expert0"] == pytest.approx(0.25)


def test_mmoe_with_one_expert_and_one_task_equals_hard_sharing_on_the_same_weights() -> None:
    hard = build_strategy("hard", ["tasks=[seg]"]).strategy.eval()
    mmoe = build_strategy("mmoe", ["tasks=[seg]", "strategy.num_experts=1"]).strategy.eval()
    mmoe.experts[0].load_state_dict(hard.encoder.state_dict())
    mmoe.heads.load_state_dict(hard.heads.state_dict())
    x = torch.randn(2, *hard.input_shape)
    torch.testing.assert_close(mmoe(x)["seg"], hard(x)["seg"])


def test_ple_has_one_level_per_encoder_stage_and_cgc_one_level() -> None:
    ple = build_strategy("ple", ["encoder.widths=[8,8,16]"]).strategy
    cgc = build_strategy("cgc", ["strategy.num_shared_experts=2"]).strategy
    assert len(ple.levels) == 3 and len(cgc.levels) == 1
    assert [level.shared_gate is None for level in ple.levels] == [False, False, True]
    ple(torch.randn(2, *ple.input_shape))
    logs = ple.diagnostics()
    assert set(logs) >= {"gate/seg/level2/seg0", "gate/seg/level2/shared0", "gate/shared/level1/depth0"}
    assert not any(key.startswith("gate/shared/level2/") for key in logs)
    assert len(cgc.levels[0].task_gates["seg"].linear.bias) == 3


class PlainEncoder(torch.nn.Module):
    """An encoder without ``stages``: a plain conv net, usable only by strategies that take any encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_strategies_that_need_stages_reject_an_encoder_without_them() -> None:
    parts = build_strategy("hard", ["tasks=[seg,count]"])
    for name in ("cross_stitch", "mtan", "ple"):
        cfg = compose_config([*TINY, f"strategy={name}", "tasks=[seg,count]"])
        with pytest.raises(ConfigError, match=rf"strategy {name} .*stages.*PlainEncoder"):
            create(cfg.strategy, encoder=PlainEncoder, tasks=parts.tasks, input_shape=(3, 32, 32))
    for name in ("mmoe", "cgc"):
        cfg = compose_config([*TINY, f"strategy={name}", "tasks=[seg,count]"])
        strategy = create(cfg.strategy, encoder=PlainEncoder, tasks=parts.tasks, input_shape=(3, 32, 32))
        assert strategy(torch.randn(2, 3, 32, 32))["seg"].shape == (2, 5, 32, 32)


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("mmoe", "strategy.num_experts=0", "num_experts"),
        ("cgc", "strategy.num_task_experts=0", "num_task_experts"),
        ("ple", "strategy.gate_pool=0", "gate_pool"),
        ("cross_stitch", "strategy.alpha_same=1.5", "alpha_same"),
    ],
)
def test_invalid_strategy_options_are_config_errors(name: str, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_strategy(name, ["tasks=[count]", override])


def test_a_misspelt_strategy_option_fails_at_compose_time() -> None:
    with pytest.raises(ConfigCompositionException, match="num_expert"):
        compose_config([*TINY, "strategy=mmoe", "strategy.num_expert=2"])


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_trains_with_a_resnet18_encoder(name: str) -> None:
    tiny = [override for override in TINY if not override.startswith("encoder.")]
    resnet = [
        "encoder=resnet18",
        "tasks=[seg,count]",
        "tasks.count.head.name=lstm",
        "data.batch_size=2",
        "data.train_size=4",
    ]
    parts = build(compose_config([*tiny, *RESNET_TINY, *resnet, f"strategy={name}"]))
    images, targets = next(iter(parts.data.train_loader()))
    predictions = parts.strategy(images)
    assert predictions["seg"].shape == (2, 5, 64, 64)
    assert predictions["count"].shape == (2, parts.tasks["count"].num_classes)
    sum(task.loss(predictions[key], targets[key]) for key, task in parts.tasks.items()).backward()
    assert all(p.grad is not None for p in parts.strategy.parameters())


@pytest.mark.parametrize("name", [name for name in STRATEGIES if name != "hard"])
def test_rep_mode_with_a_strategy_without_shared_representation_fails_at_build(name: str) -> None:
    with pytest.raises(ConfigError, match=r"weighting\.mode=rep"):
        build_strategy(name, ["weighting=pcgrad", "weighting.mode=rep"])
