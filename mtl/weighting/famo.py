"""FAMO, Liu et al., "FAMO: fast adaptive multitask optimization", NeurIPS 2023 (one backward pass per step)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.errors import ConfigError
from mtl.weighting.base import LossesFn, LossWeighting

UPDATES = ("same_batch", "next_batch")


class FAMO(LossWeighting):
    """Minimise ``Σ_k z_k log(L_k − m_k + ε) / c`` with ``z = softmax(ξ)``, ``c = Σ_k z_k / (L_k − m_k + ε)``.

    After each step the logits ``ξ`` take one Adam step (learning rate ``w_lr``, L2 weight decay ``gamma``)
    along ``−J_softmax(ξ)ᵀ δ``, ``δ_k = log(L_k^before) − log(L_k^after)``: tasks whose log-loss fell least
    gain weight. ``update=same_batch`` measures ``L^after`` with an extra no-grad forward on the same batch
    (the paper's algorithm and code); ``update=next_batch`` uses the next step's losses instead (no extra
    forward, as the authors' toy example does). Logged weights are the effective ``z_k / (c (L_k − m_k + ε))``.
    The logits and Adam moments are buffers, so they are checkpointed and not touched by the model optimizer.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        w_lr: float = 0.025,
        gamma: float = 0.01,
        update: str = "same_batch",
        min_losses: Sequence[float] | None = None,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__(task_names)
        if update not in UPDATES:
            raise ConfigError(f"weighting.update must be one of {UPDATES}, got {update!r}")
        if w_lr <= 0 or gamma < 0:
            raise ConfigError(f"weighting.w_lr must be > 0 and weighting.gamma >= 0, got {w_lr} and {gamma}")
        k = len(self.task_names)
        if min_losses is not None and len(min_losses) != k:
            raise ConfigError(f"weighting.min_losses needs one value per task ({k}), got {list(min_losses)}")
        self.w_lr, self.gamma, self.update, self.epsilon = w_lr, gamma, update, epsilon
        self.register_buffer("min_losses", torch.tensor(list(min_losses or [0.0] * k), dtype=torch.float32))
        self.register_buffer("logits", torch.zeros(k))
        self.register_buffer("adam_m", torch.zeros(k))
        self.register_buffer("adam_v", torch.zeros(k))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("previous", torch.zeros(k))
        self.register_buffer("has_previous", torch.zeros((), dtype=torch.bool))

    def shifted(self, losses: Tensor) -> Tensor:
        return losses - self.min_losses + self.epsilon

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        if self.update == "next_batch" and bool(self.has_previous):
            self.step_logits(losses.detach())
        self.previous = losses.detach().clone()
        self.has_previous.fill_(True)
        shifted = self.shifted(losses)
        z = torch.softmax(self.logits, dim=0)
        c = (z / shifted.detach()).sum()
        return (z * shifted.log()).sum() / c, (z / (c * shifted)).detach()

    def after_step(self, recompute: LossesFn) -> dict[str, float]:
        if self.update == "same_batch":
            with torch.no_grad():
                self.step_logits(self.stack(recompute()).detach())
        return {}

    def step_logits(self, current: Tensor) -> None:
        """One Adam step on the logits from the change in log-loss since the last weighted step."""
        delta = self.shifted(self.previous).log() - self.shifted(current).log()
        z = torch.softmax(self.logits, dim=0)
        gradient = z * (delta - (z * delta).sum()) + self.gamma * self.logits
        beta1, beta2 = 0.9, 0.999
        self.adam_steps += 1
        t = int(self.adam_steps)
        self.adam_m.mul_(beta1).add_(gradient, alpha=1 - beta1)
        self.adam_v.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        denominator = (self.adam_v / (1 - beta2**t)).sqrt().add_(1e-8)
        self.logits.addcdiv_(self.adam_m, denominator, value=-self.w_lr / (1 - beta1**t))

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}, w_lr={self.w_lr}, gamma={self.gamma}, update={self.update!r}"
