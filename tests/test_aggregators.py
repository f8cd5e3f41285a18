"""Gradient aggregators as maths (à la torchjd): properties on many matrices, and known answers from the papers."""

from __future__ import annotations

import logging

import pytest
import torch

from mtl.weighting import (
    DBMTL,
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    GradDrop,
    GradientWeighting,
    GradNorm,
    GradVac,
    NashMTL,
    PCGrad,
    UPGrad,
)
from mtl.weighting.gradients import gram_matrix
from mtl.weighting.solvers import active_set_qp, nash_bargaining

ALL = [MGDA, CAGrad, UPGrad, PCGrad, GradVac, IMTLG, NashMTL, AlignedMTL, GradDrop, GradNorm, DBMTL]
DETERMINISTIC = [MGDA, CAGrad, UPGrad, IMTLG, NashMTL, AlignedMTL, GradNorm, DBMTL]
NON_CONFLICTING = [MGDA, UPGrad]
# degree of homogeneity: aggregate(s·G) = s^degree · aggregate(G)
DEGREE = {MGDA: 1, CAGrad: 1, UPGrad: 1, PCGrad: 1, GradVac: 1, IMTLG: 1, NashMTL: 0, AlignedMTL: 1, GradDrop: 1}


def build(cls: type[GradientWeighting], k: int, seed: int = 0) -> GradientWeighting:
    names = [f"t{i}" for i in range(k)]
    return cls(names, seed=seed) if cls in (PCGrad, GradVac, GradDrop) else cls(names)


def _matrices() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    random = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    conflicting = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    conflicting[1] = -0.8 * conflicting[0] + 0.2 * conflicting[1]
    collinear = torch.randn(1, 40, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [2.0], [0.5]])
    return {
        "zero": torch.zeros(3, 10, dtype=torch.float64),
        "one_task": torch.randn(1, 10, generator=gen, dtype=torch.float64),
        "random": random,
        "random_k5": torch.randn(5, 200, generator=gen, dtype=torch.float64),
        "more_tasks_than_dims": torch.randn(6, 3, generator=gen, dtype=torch.float64),
        "conflicting": conflicting,
        "collinear": collinear,
        "one_zero_row": torch.cat([random[:2], torch.zeros(1, 40, dtype=torch.float64)]),
        "tiny": random * 1e-8,
        "huge": random * 1e8,
    }


MATRICES = _matrices()


@pytest.mark.parametrize("name", list(MATRICES))
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_output_has_the_right_shape_and_is_finite(cls: type[GradientWeighting], name: str) -> None:
    grads = MATRICES[name]
    aggregator = build(cls, grads.shape[0])
    result = aggregator.aggregate(grads)
    assert result.shape == (grads.shape[1],)
    assert result.dtype == grads.dtype
    assert torch.isfinite(result).all()
    if name == "zero":
        assert torch.equal(result, torch.zeros_like(result))


@pytest.mark.parametrize("name", list(MATRICES))
@pytest.mark.parametrize("cls", NON_CONFLICTING, ids=lambda c: c.name)
def test_the_update_conflicts_with_no_task(cls: type[GradientWeighting], name: str) -> None:
    grads = MATRICES[name]
    result = build(cls, grads.shape[0]).aggregate(grads)
    scale = float(grads.norm(dim=1).max()) ** 2  # |d| <= max |g_k| for both, so this bounds round-off
    assert (grads @ result >= -1e-12 * scale).all(), grads @ result


@pytest.mark.parametrize("name", ["random", "random_k5", "conflicting", "more_tasks_than_dims", "one_zero_row"])
@pytest.mark.parametrize("cls", DETERMINISTIC, ids=lambda c: c.name)
def test_permuting_the_tasks_does_not_change_the_update(cls: type[GradientWeighting], name: str) -> None:
    grads = MATRICES[name]
    permutation = torch.randperm(grads.shape[0], generator=torch.Generator().manual_seed(1))
    aggregator = build(cls, grads.shape[0])
    expected = aggregator.aggregate(grads)
    if cls is NashMTL and name == "more_tasks_than_dims":  # 0 is in the hull: no bargaining solution exists
        assert int(aggregator.solver_failures) == 1
        return
    permuted = build(cls, grads.shape[0]).aggregate(grads[permutation])
    torch.testing.assert_close(permuted, expected, rtol=1e-7, atol=1e-12 * float(grads.abs().max()))


@pytest.mark.parametrize("scale", [1e-8, 1e8])
@pytest.mark.parametrize("cls", list(DEGREE), ids=lambda c: c.name)
def test_scaling_the_gradients_scales_the_update(cls: type[GradientWeighting], scale: float) -> None:
    grads = MATRICES["conflicting"]
    expected = build(cls, 3).aggregate(grads) * scale ** DEGREE[cls]
    actual = build(cls, 3).aggregate(grads * scale)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_one_task_gets_its_own_gradient_direction(cls: type[GradientWeighting]) -> None:
    grads = MATRICES["one_task"]
    result = build(cls, 1).aggregate(grads)
    cosine = float(result @ grads[0] / (result.norm() * grads[0].norm()))
    assert cosine == pytest.approx(1.0, abs=1e-9) or cls is GradDrop  # GradDrop keeps every coordinate: equal
    if cls in (MGDA, UPGrad, PCGrad, GradVac, IMTLG, AlignedMTL, GradDrop, GradNorm):
        torch.testing.assert_close(result, grads[0])


# ----------------------------------------------------------------------------- known answers
def test_mgda_of_two_vectors_is_their_min_norm_convex_combination() -> None:
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        g1, g2 = torch.randn(2, 6, generator=gen, dtype=torch.float64)
        g2 = g2 + torch.rand((), generator=gen, dtype=torch.float64) * 3 * g1
        weight = float(((g2 - g1) @ g2 / (g1 - g2).pow(2).sum()).clamp(0, 1))
        expected = weight * g1 + (1 - weight) * g2
        torch.testing.assert_close(MGDA(["a", "b"]).aggregate(torch.stack([g1, g2])), expected)


def test_mgda_of_opposite_vectors_is_zero() -> None:
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    result = MGDA(["a", "b"]).aggregate(torch.stack([g, -3 * g]))
    assert result.norm() < 1e-12


def test_pcgrad_of_orthogonal_gradients_is_their_sum() -> None:
    grads = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -3.0]], dtype=torch.float64)
    torch.testing.assert_close(PCGrad(["a", "b", "c"], seed=0).aggregate(grads), grads.sum(0))


def test_pcgrad_of_two_conflicting_gradients_is_the_papers_projection() -> None:
    g1 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    expected = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g2 @ g1) / (g1 @ g1) * g1)
    result = PCGrad(["a", "b"], seed=0).aggregate(torch.stack([g1, g2]))
    torch.testing.assert_close(result, expected)
    assert result @ g1 >= 0 and result @ g2 >= 0


def test_gradvac_first_step_matches_pcgrad_and_tracks_the_similarity() -> None:
    grads = torch.tensor([[1.0, 1.0], [-1.0, 0.5]], dtype=torch.float64)
    gradvac = GradVac(["a", "b"], beta=0.5, seed=0)
    torch.testing.assert_close(gradvac.aggregate(grads), PCGrad(["a", "b"], seed=0).aggregate(grads))
    cosine = float(grads[0] @ grads[1] / (grads[0].norm() * grads[1].norm()))
    assert float(gradvac.targets[0, 1]) == pytest.approx(0.5 * cosine)


def test_cagrad_with_c_zero_is_the_mean() -> None:
    grads = MATRICES["conflicting"]
    torch.testing.assert_close(CAGrad(["a", "b", "c"], c=0.0).aggregate(grads), grads.mean(0))


def test_cagrad_solves_its_inner_problem() -> None:
    """The returned d is the paper's g₀ + c‖g₀‖ g_w/‖g_w‖ (rescaled), with w minimising the dual objective."""
    grads = MATRICES["conflicting"]
    c = 0.5
    cagrad = CAGrad(["a", "b", "c"], c=c)
    update = cagrad.aggregate(grads) * (1 + c**2)
    g0 = grads.mean(0)
    g_w = update - g0
    assert float(g_w.norm()) == pytest.approx(c * float(g0.norm()), rel=1e-8)

    def objective(w: torch.Tensor) -> float:
        combined = w @ grads
        return float(combined @ g0 + c * g0.norm() * combined.norm())

    weights = (cagrad._weights * (1 + c**2) - 1 / 3) * float(g_w.norm()) / (c * float(g0.norm()))
    weights = weights / weights.sum()
    best = objective(weights)
    simplex = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample((2000,))
    assert all(objective(w) >= best - 1e-9 for w in simplex)


def test_imtl_g_update_has_equal_projections_on_the_unit_gradients() -> None:
    for name in ["random", "random_k5", "conflicting"]:
        grads = MATRICES[name]
        imtl = IMTLG([f"t{i}" for i in range(grads.shape[0])])
        update = imtl.aggregate(grads)
        projections = (grads / grads.norm(dim=1, keepdim=True)) @ update
        torch.testing.assert_close(projections, projections[:1].expand_as(projections))
        assert float(imtl._weights.sum()) == pytest.approx(1.0)


def test_nash_mtl_weights_solve_the_bargaining_equation() -> None:
    grads = MATRICES["random_k5"]
    nash = NashMTL([f"t{i}" for i in range(5)])
    nash.aggregate(grads)
    alpha = nash._weights
    torch.testing.assert_close(gram_matrix(grads) @ alpha, 1 / alpha)
    assert (alpha > 0).all() and int(nash.solver_failures) == 0


def test_aligned_mtl_rescales_orthogonal_gradients_to_the_smallest_norm() -> None:
    grads = torch.diag(torch.tensor([1.0, 4.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(AlignedMTL(["a", "b", "c"]).aggregate(grads), torch.full((3,), 0.5, dtype=torch.float64))


def test_upgrad_of_non_conflicting_gradients_is_their_mean() -> None:
    grads = torch.tensor([[1.0, 0.2], [0.5, 1.0], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(UPGrad(["a", "b", "c"]).aggregate(grads), grads.mean(0))


def test_graddrop_keeps_agreeing_signs_and_one_sign_of_disagreeing_ones() -> None:
    grads = torch.tensor([[1.0, 2.0, 3.0, -1.0], [2.0, 1.0, -3.0, 2.0]], dtype=torch.float64)
    result = GradDrop(["a", "b"], seed=0).aggregate(grads)
    assert result[:2].tolist() == [3.0, 3.0]
    assert result[2].item() in (3.0, -3.0)
    assert result[3].item() in (-1.0, 2.0)


def test_graddrop_picks_each_sign_as_often_as_its_purity() -> None:
    grads = torch.tensor([[3.0] * 4000, [-1.0] * 4000], dtype=torch.float64)
    result = GradDrop(["a", "b"], seed=0).aggregate(grads)
    assert float((result > 0).double().mean()) == pytest.approx(0.75, abs=0.03)


def test_db_mtl_scales_every_ema_gradient_to_the_largest_norm() -> None:
    grads = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    db = DBMTL(["a", "b"], beta=0.9)
    torch.testing.assert_close(db.aggregate(grads), torch.tensor([0.3, 0.3], dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(db.aggregate(grads), torch.tensor([0.57, 0.57], dtype=torch.float64), rtol=1e-6, atol=0)


def test_gradnorm_raises_the_weight_of_the_task_that_trains_slower() -> None:
    gradnorm = GradNorm(["a", "b"], alpha=1.5)
    gradnorm.steps += 1
    gradnorm.observe(torch.tensor([1.0, 1.0]))
    gradnorm.steps += 1
    gradnorm.observe(torch.tensor([0.9, 0.3]))  # task a's loss fell less: its relative rate is higher
    gradnorm.aggregate(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert gradnorm.logits.grad[0] < 0 < gradnorm.logits.grad[1]


# ----------------------------------------------------------------------------- solvers and failure reporting
def test_active_set_qp_matches_a_brute_force_search() -> None:
    gen = torch.Generator().manual_seed(5)
    jac = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    q = jac @ jac.T
    lower = torch.tensor([0.25, 0.0, 0.0, 0.0], dtype=torch.float64)
    x, converged = active_set_qp(q, torch.zeros(4, dtype=torch.float64), lower)
    assert converged and (x >= lower - 1e-12).all()
    samples = lower + torch.rand(20000, 4, generator=gen, dtype=torch.float64) * 2
    values = ((samples @ q) * samples).sum(1)
    assert float(x @ q @ x) <= float(values.min()) + 1e-12


def test_nash_bargaining_reports_a_problem_without_solution() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    _, converged = nash_bargaining(g @ g.T)
    assert not converged


def test_a_solver_failure_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    nash = NashMTL(["a", "b"])
    grads = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger="mtl.weighting.base"):
        for _ in range(5):
            nash.aggregate(grads)
    assert int(nash.solver_failures) == 5
    warned = [record.getMessage() for record in caplog.records]
    assert [message.split(" at ")[0] for message in warned] == [f"nash_mtl solver failure #{n}" for n in (1, 2, 4)]
    assert nash.diagnostics(grads)["solver_failures/nash_mtl"] == 5.0
