"""The weighting base: equal weighting, per-task gradients, param/rep modes, and every yaml in conf/weighting."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from mtl.errors import ConfigError
from mtl.strategies.base import SharingStrategy
from mtl.weighting import (
    DBMTL,
    FAMO,
    IMTLL,
    MGDA,
    CAGrad,
    DynamicWeightAverage,
    EqualWeighting,
    GeometricLossStrategy,
    GradientWeighting,
    GradVac,
    GramWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
)
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


# ----------------------------------------------------------------------------- every yaml: modes, training, state
def gradient_yaml(name: str) -> bool:
    return "mode" in compose_config([f"weighting={name}"]).weighting


def modes_of(name: str) -> list[str]:
    return ["param", "rep"] if gradient_yaml(name) else ["none"]


def build_weighting(name: str, mode: str, seed: int = 0):
    overrides = [f"weighting={name}"] + ([f"weighting.mode={mode}"] if mode != "none" else [])
    torch.manual_seed(seed)
    return instantiate(compose_config(overrides).weighting, task_names=TASKS)


def train_steps(weighting, model: TwoLayer, steps: int, seed: int = 0) -> list[dict[str, float]]:
    """A miniature trainer loop: predict, backward, step, after_step; one epoch end every 2 steps."""
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.05)
    generator = torch.Generator().manual_seed(seed)
    logs = []
    for step in range(steps):
        x = torch.randn(8, 4, generator=generator)
        targets = {name: torch.randn(8, generator=generator) for name in TASKS}
        optimizer.zero_grad(set_to_none=True)
        predictions = weighting.predict(model, x)
        logs.append(weighting.backward(losses_of(predictions, targets), model))
        optimizer.step()
        logs[-1].update(weighting.after_step(lambda x=x, targets=targets: losses_of(model(x), targets)))
        if step % 2 == 1:
            weighting.on_epoch_end()
    return logs


WEIGHTING_MODES = [(name, mode) for name in options("weighting") for mode in modes_of(name)]


@pytest.mark.parametrize(("name", "mode"), WEIGHTING_MODES)
def test_every_weighting_trains_in_every_mode_it_supports(name: str, mode: str) -> None:
    if mode == "rep" and name == "db_mtl":
        with pytest.raises(ConfigError, match=r"supports only weighting\.mode=param"):
            DBMTL(TASKS, mode=mode)
        return
    weighting = build_weighting(name, mode)
    torch.manual_seed(1)
    model = TwoLayer()
    before = [p.detach().clone() for p in model.parameters()]
    logs = train_steps(weighting, model, steps=6)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    for entry in logs:
        assert all(isinstance(v, float) and v == v for v in entry.values()), entry
    if mode != "none":
        assert {f"grad_norm/{task}" for task in TASKS} <= set(logs[0])
    if name != "graddrop":
        assert {f"weight/{task}" for task in TASKS} <= set(logs[-1])


@pytest.mark.parametrize(("name", "mode"), [(n, m) for n, m in WEIGHTING_MODES if (n, m) != ("db_mtl", "rep")])
def test_every_weighting_state_survives_a_checkpoint_round_trip(name: str, mode: str, tmp_path) -> None:
    """Train, save, load into a fresh object built with another seed: the next steps must be identical."""
    original = build_weighting(name, mode, seed=0)
    torch.manual_seed(1)
    model = TwoLayer()
    train_steps(original, model, steps=5)
    path = tmp_path / "weighting.pt"
    torch.save({"weighting": original.state_dict(), "model": model.state_dict()}, path)
    restored = build_weighting(name, mode, seed=123)
    copy = TwoLayer()
    state = torch.load(path, weights_only=False)
    restored.load_state_dict(state["weighting"])
    copy.load_state_dict(state["model"])
    expected = train_steps(original, model, steps=3, seed=7)
    actual = train_steps(restored, copy, steps=3, seed=7)
    assert actual == expected
    for a, b in zip(model.parameters(), copy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_diagnostics_log_cosines_every_n_steps_and_only_then() -> None:
    weighting = MGDA(TASKS, diagnostics_every=3)
    logs = train_steps(weighting, TwoLayer(), steps=6)
    with_cosines = [i + 1 for i, entry in enumerate(logs) if "cos/a~b" in entry]
    assert with_cosines == [3, 6]
    assert {"cos/a~b", "cos/a~c", "cos/b~c"} <= set(logs[2])
    assert all(-1.0 <= logs[2][key] <= 1.0 for key in ("cos/a~b", "cos/a~c", "cos/b~c"))
    assert logs[0]["solver_failures/mgda"] == 0.0
    assert sum(logs[0][f"weight/{t}"] for t in TASKS) == pytest.approx(1.0)


def test_rep_mode_computes_gradients_of_the_representation() -> None:
    """A gradient method in rep mode sees one row per task of size batch × width of z."""
    seen = []

    class Spy(SumAggregator):
        def aggregate(self, grads):
            seen.append(grads.shape)
            return super().aggregate(grads)

    gradients_after(Spy(TASKS, mode="rep"))
    gradients_after(Spy(TASKS, mode="param"))
    assert seen == [(3, 8 * 3), (3, 4 * 3 + 3)]


def test_rep_mode_is_refused_for_a_strategy_without_shared_representation() -> None:
    class NoRep(TwoLayer):
        encode = SharingStrategy.encode

    with pytest.raises(ConfigError, match=r"weighting\.mode=param"):
        MGDA(TASKS, mode="rep").predict(NoRep(), torch.randn(2, 4))


# ----------------------------------------------------------------------------- loss-based known answers
def loss_vector(values=(1.0, 2.0, 4.0)) -> torch.Tensor:
    return torch.tensor(values, requires_grad=True)


def test_uw_and_imtl_l_minimise_their_papers_objectives() -> None:
    losses = loss_vector()
    uw = UncertaintyWeighting(TASKS, init=0.5)
    total, weights = uw.combine(losses)
    s = torch.full((3,), 0.5)
    assert float(total.detach()) == pytest.approx(float((0.5 * torch.exp(-s) * losses.detach() + 0.5 * s).sum()))
    torch.testing.assert_close(weights, 0.5 * torch.exp(-s))
    total.backward()
    torch.testing.assert_close(uw.log_scales.grad, 0.5 - 0.5 * torch.exp(-s) * losses.detach())
    imtl = IMTLL(TASKS)
    total, weights = imtl.combine(losses)
    total.backward()
    torch.testing.assert_close(imtl.log_scales.grad, losses.detach() - 1)


def test_dwa_weights_follow_the_ratio_of_the_last_two_epoch_means() -> None:
    dwa = DynamicWeightAverage(TASKS, temperature=2.0)
    for epoch_losses in ([2.0, 2.0, 2.0], [1.0, 2.0, 4.0]):
        assert dwa.weights(torch.tensor(epoch_losses)).tolist() == [1.0, 1.0, 1.0]
        dwa.on_epoch_end()
    ratios = torch.tensor([0.5, 1.0, 2.0])
    torch.testing.assert_close(dwa.weights(torch.ones(3)), 3 * torch.softmax(ratios / 2.0, dim=0))


def test_rlw_draws_fresh_normalised_weights_reproducibly() -> None:
    first, second = RandomLossWeighting(TASKS, seed=3), RandomLossWeighting(TASKS, seed=3)
    draws = [first.weights(torch.ones(3)) for _ in range(3)]
    assert all(float(w.sum()) == pytest.approx(1.0) and (w > 0).all() for w in draws)
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(second.weights(torch.ones(3)), draws[0])


def test_gls_is_the_geometric_mean_and_refuses_non_positive_losses() -> None:
    losses = loss_vector()
    total, weights = GeometricLossStrategy(TASKS).combine(losses)
    assert float(total.detach()) == pytest.approx(2.0)
    total.backward()
    torch.testing.assert_close(losses.grad, weights)
    with pytest.raises(ValueError, match=r"\['b'\]"):
        GeometricLossStrategy(TASKS).combine(torch.tensor([1.0, 0.0, 2.0]))


@pytest.mark.parametrize("update", ["same_batch", "next_batch"])
def test_famo_moves_weight_to_the_task_whose_loss_fell_least(update: str) -> None:
    famo = FAMO(TASKS, update=update)
    before = torch.tensor([1.0, 1.0, 1.0])
    after = torch.tensor([0.5, 0.9, 0.5])
    _, weights = famo.combine(before)
    torch.testing.assert_close(weights * before, torch.full((3,), 1 / 3))  # effective weights at equal logits
    if update == "same_batch":
        famo.after_step(lambda: dict(zip(TASKS, after, strict=True)))
        _, weights = famo.combine(after)
    else:
        assert famo.after_step(lambda: pytest.fail("next_batch must not recompute")) == {}
        _, weights = famo.combine(after)
    z = torch.softmax(famo.logits, 0)
    assert z[1] > z[0] and z[0] == pytest.approx(float(z[2]))


def test_bad_hyper_parameters_name_the_key() -> None:
    for build_bad, key in [
        (lambda: CAGrad(TASKS, c=-1), "weighting.c"),
        (lambda: DynamicWeightAverage(TASKS, temperature=0), "weighting.temperature"),
        (lambda: FAMO(TASKS, update="later"), "weighting.update"),
        (lambda: FAMO(TASKS, min_losses=[0.0]), "weighting.min_losses"),
        (lambda: GradVac(TASKS, beta=2), "weighting.beta"),
        (lambda: MGDA(TASKS, diagnostics_every=-1), "weighting.diagnostics_every"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_bad()


class Normalised(GramWeighting):
    """The docs' example of a user gradient method: the sum of the unit task gradients."""

    def weights_from_gram(self, gram):
        return gram.diagonal().clamp_min(1e-30).rsqrt()


def test_a_user_subclass_plugs_in_with_target() -> None:
    cfg = compose_config(["weighting=mgda", f"weighting._target_={__name__}.Normalised", "weighting.mode=rep"])
    weighting = instantiate(cfg.weighting, task_names=TASKS)
    assert isinstance(weighting, Normalised) and weighting.mode == "rep"
    grads = torch.tensor([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0]], dtype=torch.float64)
    expected = torch.tensor([1 + 2**-0.5, 1 + 2**-0.5], dtype=torch.float64)
    torch.testing.assert_close(weighting.aggregate(grads), expected)
    assert all(torch.isfinite(g).all() for g in gradients_after(weighting).values())
