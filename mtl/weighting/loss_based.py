"""Loss-based schemes: each rescales the K losses and runs one backward pass, so its cost does not grow with K."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.weighting.base import LossWeighting, Stochastic


class LearnedScales(LossWeighting):
    """Shared part of UW and IMTL-L: one learned log-scale ``s_k`` per task, trained with the model."""

    def __init__(self, task_names: Sequence[str], init: float = 0.0) -> None:
        super().__init__(task_names)
        self.log_scales = nn.Parameter(torch.full((len(self.task_names),), float(init)))

    def scaled(self, losses: Tensor, weights: Tensor, regulariser: Tensor) -> tuple[Tensor, Tensor]:
        return (weights * losses + regulariser).sum(), weights


class UncertaintyWeighting(LearnedScales):
    """UW, Kendall, Gal & Cipolla, "Multi-task learning using uncertainty to weigh losses", CVPR 2018.

    ``Σ_k ½ exp(−s_k) L_k + ½ s_k`` with ``s_k = log σ_k²`` learned (the regression form of the paper's Eq. 7,
    as in the Nash-MTL and LibMTL code); logged weights are ``½ exp(−s_k)``.
    """

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return self.scaled(losses, 0.5 * torch.exp(-self.log_scales), 0.5 * self.log_scales)


class IMTLL(LearnedScales):
    """IMTL-L, Liu et al., "Towards impartial multi-task learning", ICLR 2021 (loss-balance part).

    ``Σ_k exp(s_k) L_k − s_k`` with learned ``s_k``: at the optimum every scaled loss ``exp(s_k) L_k`` equals 1.
    """

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return self.scaled(losses, torch.exp(self.log_scales), -self.log_scales)


class DynamicWeightAverage(LossWeighting):
    """DWA, Liu, Johns & Davison, "End-to-end multi-task learning with attention", CVPR 2019, Eq. 7.

    ``w_k = K softmax_k(r_k / T)`` with ``r_k = L̄_k(e−1) / L̄_k(e−2)`` the ratio of the task's mean training
    losses over the last two epochs (collected here; the trainer calls ``on_epoch_end``); ``w = 1`` during the
    first two epochs.
    """

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(task_names)
        if temperature <= 0:
            raise ConfigError(f"weighting.temperature must be > 0, got {temperature}")
        self.temperature = temperature
        k = len(self.task_names)
        self.register_buffer("epoch_sums", torch.zeros(k))
        self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("history", torch.ones(2, k))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def weights(self, losses: Tensor) -> Tensor:
        self.epoch_sums += losses
        self.epoch_steps += 1
        if int(self.epochs_seen) < 2:
            return torch.ones_like(losses)
        ratios = self.history[1] / self.history[0].clamp_min(torch.finfo(losses.dtype).tiny)
        return len(self.task_names) * torch.softmax(ratios / self.temperature, dim=0)

    def on_epoch_end(self) -> None:
        if int(self.epoch_steps) == 0:
            return
        self.history = torch.stack([self.history[1], self.epoch_sums / self.epoch_steps])
        self.epochs_seen += 1
        self.epoch_sums.zero_()
        self.epoch_steps.zero_()

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}, temperature={self.temperature}"


class RandomLossWeighting(Stochastic, LossWeighting):
    """RLW, Lin et al., "Reasonable effectiveness of random weighting", TMLR 2022.

    Fresh weights every step: ``w = softmax(λ̃)``, ``λ̃ ~ N(0, I_K)`` (the paper's default distribution; the
    weights sum to 1). ``seed`` = null takes the seed from the run's seed.
    """

    def weights(self, losses: Tensor) -> Tensor:
        draw = torch.randn(len(self.task_names), generator=self.generator, dtype=losses.dtype)
        return torch.softmax(draw, dim=0).to(losses.device)


class GeometricLossStrategy(LossWeighting):
    """GLS, Chennupati et al., "MultiNet++: multi-stream feature aggregation and geometric loss strategy", 2019.

    Minimises the geometric mean ``(Π_k L_k)^{1/K}``; its gradient weights task k by ``GLS / (K L_k)`` (logged).
    Needs positive losses: a zero or negative loss is an error naming the task.
    """

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        bad = (losses.detach() <= 0).nonzero().flatten().tolist()
        if bad:
            names = [self.task_names[i] for i in bad]
            raise ValueError(f"weighting gls needs positive losses; task(s) {names} have losses <= 0")
        total = losses.log().mean().exp()
        return total, (total / (len(self.task_names) * losses)).detach()
