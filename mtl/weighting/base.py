"""The weighting contract: per-task losses (and, for gradient methods, per-task gradients) → one update.

Two families share the :class:`Weighting` interface ``backward(losses, strategy) -> logs``:

- :class:`LossWeighting` rescales the losses and runs one backward pass of their weighted sum;
- :class:`GradientWeighting` computes the K×P matrix of per-task gradients (of the shared parameters in
  ``mode="param"``, of the shared representation in ``mode="rep"``), lets ``aggregate`` turn it into one
  P-vector, and writes that back as the gradient. :class:`GramWeighting` is the common special case whose
  update is ``Σ_k w_k g_k`` with weights computed from the K×K Gram matrix alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.strategies.base import Images, SharingStrategy, predict
from mtl.weighting.gradients import gram_matrix, per_task_grads, set_flat_grad

log = logging.getLogger(__name__)

MODES = ("param", "rep")

LossesFn = Callable[[], Mapping[str, Tensor]]


class Weighting(nn.Module):
    """Base class of every weighting scheme; ``task_names`` fixes the order of the loss vector."""

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        if not task_names:
            raise ConfigError(f"{type(self).__name__} needs at least one task name")
        self.task_names = list(task_names)

    def predict(self, strategy: SharingStrategy, images: Images) -> dict[str, Tensor]:
        """The forward pass whose predictions ``backward`` will see (rep-mode methods hook in here)."""
        return predict(strategy, images)

    def backward(self, losses: Mapping[str, Tensor], strategy: SharingStrategy) -> dict[str, float]:
        """Backpropagate one update into ``.grad`` of the strategy's parameters; return scalars to log."""
        raise NotImplementedError

    def after_step(self, recompute: LossesFn) -> dict[str, float]:
        """Called after the optimizer step; ``recompute()`` gives the new losses on the same batch (no grad).

        A no-op by default: only methods whose update needs the post-step losses (FAMO) call ``recompute``,
        so the others cost nothing here.
        """
        return {}

    def on_epoch_end(self) -> None:
        """Called by the trainer after every training epoch (DWA keeps per-epoch loss averages)."""

    def ordered(self, losses: Mapping[str, Tensor]) -> list[Tensor]:
        """The losses in ``task_names`` order (a mismatch is a wiring bug: say which)."""
        if set(losses) != set(self.task_names):
            raise ValueError(
                f"{type(self).__name__} was built for tasks {self.task_names} but got losses for {list(losses)}"
            )
        return [losses[name] for name in self.task_names]

    def stack(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The losses as a K-vector in ``task_names`` order."""
        return torch.stack(self.ordered(losses))

    def weight_logs(self, weights: Tensor) -> dict[str, float]:
        return {f"weight/{name}": float(w) for name, w in zip(self.task_names, weights.tolist(), strict=True)}

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}"


class LossWeighting(Weighting):
    """Schemes that only rescale the losses: one backward pass of ``Σ_k w_k · L_k``."""

    def weights(self, losses: Tensor) -> Tensor:
        """The K weights for the (detached) loss vector; subclasses override this or ``combine``."""
        raise NotImplementedError

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """The scalar to backpropagate and the weights to log."""
        weights = self.weights(losses.detach())
        return (weights * losses).sum(), weights

    def backward(self, losses: Mapping[str, Tensor], strategy: SharingStrategy) -> dict[str, float]:
        total, weights = self.combine(self.stack(losses))
        total.backward()
        return self.weight_logs(weights.detach())


class GradientWeighting(Weighting):
    """Methods that combine per-task gradients: subclasses implement ``aggregate(grads: K×P) -> P``.

    ``mode="param"``: exact per-task gradients of ``strategy.shared_parameters()`` (one forward, K backward
    passes through the trunk); task-specific parameters receive their own task's gradient.
    ``mode="rep"``: per-task gradients of the shared representation ``z = strategy.encode(x)`` through the
    heads only; the aggregated gradient is backpropagated through the encoder once.

    Logs per-task gradient norms every step, the effective weights when ``aggregate`` records them
    (:meth:`record_weights`), the pairwise cosine similarities ``cos/<a>~<b>`` every ``diagnostics_every``
    steps (0 = never), and for methods with an iterative solver the running count of solver failures.
    """

    name: ClassVar[str] = "gradient"
    has_solver: ClassVar[bool] = False
    supports_rep_mode: ClassVar[bool] = True

    def __init__(self, task_names: Sequence[str], mode: str = "param", diagnostics_every: int = 10) -> None:
        super().__init__(task_names)
        if mode not in MODES:
            raise ConfigError(f"weighting.mode must be one of {MODES}, got {mode!r}")
        if mode == "rep" and not self.supports_rep_mode:
            raise ConfigError(f"weighting {self.name} supports only weighting.mode=param, got mode={mode!r}")
        if diagnostics_every < 0:
            raise ConfigError(f"weighting.diagnostics_every must be >= 0 (0 = never), got {diagnostics_every}")
        self.mode = mode
        self.diagnostics_every = diagnostics_every
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("solver_failures", torch.zeros((), dtype=torch.long))
        self._representation: tuple[Tensor, Tensor] | None = None
        self._weights: Tensor | None = None
        self._gram: Tensor | None = None

    def aggregate(self, grads: Tensor) -> Tensor:
        raise NotImplementedError

    def transform_loss(self, loss: Tensor) -> Tensor:
        """The scalar whose per-task gradient is aggregated, from one task's loss (identity; DB-MTL takes logs)."""
        return loss

    def observe(self, losses: Tensor) -> None:
        """Sees the detached loss vector before ``aggregate`` (GradNorm needs the losses); a no-op here."""

    def record_weights(self, weights: Tensor) -> None:
        """Called by ``aggregate``: the effective per-task weights of the update, logged as ``weight/<task>``."""
        self._weights = weights.detach()

    def record_gram(self, gram: Tensor) -> None:
        """Called by ``aggregate`` when it computed ``G Gᵀ`` anyway, so the diagnostics need not recompute it."""
        self._gram = gram.detach()

    def solver_failed(self, message: str) -> None:
        """Count and report a solver that did not converge; its last iterate is used, never another method.

        Every failure is counted (``solver_failures`` in the logs, so TensorBoard shows each one); the warning is
        written for the 1st, 2nd, 4th, 8th, ... failure so that a method stuck near a Pareto-stationary point
        does not flood the log, and each warning says how many there have been.
        """
        self.solver_failures += 1
        count = int(self.solver_failures)
        if count & (count - 1) == 0:
            log.warning(
                "%s solver failure #%d at step %d: %s (warnings are shown for failure 1, 2, 4, 8, ...; every one is "
                "counted in solver_failures)",
                self.name,
                count,
                self.step,
                message,
            )

    @property
    def step(self) -> int:
        return int(self.steps)

    def predict(self, strategy: SharingStrategy, images: Images) -> dict[str, Tensor]:
        if self.mode == "param":
            return predict(strategy, images)
        if not isinstance(images, Tensor):
            raise ConfigError(
                "weighting.mode=rep needs one input shared by all tasks; this data set gives each task its own "
                "input (multi-input): use weighting.mode=param"
            )
        if not strategy.supports_rep_mode:
            raise ConfigError(
                f"weighting.mode=rep needs a strategy with one shared representation (encode/decode); "
                f"{type(strategy).__name__} has none: use weighting.mode=param"
            )
        z = strategy.encode(images)
        z_leaf = z.detach().requires_grad_(True)
        self._representation = (z, z_leaf)
        return strategy.decode(z_leaf)

    def backward(self, losses: Mapping[str, Tensor], strategy: SharingStrategy) -> dict[str, float]:
        # one scalar per task, not rows of a stacked vector: a backward pass through ``stack`` would send (zero)
        # gradients into every task's graph, K times over
        ordered = self.ordered(losses)
        self.steps += 1
        self.observe(torch.stack([loss.detach() for loss in ordered]))
        rows = [self.transform_loss(loss) for loss in ordered]
        self._weights, self._gram = None, None
        if self.mode == "param":
            params = [p for p in strategy.shared_parameters() if p.requires_grad]
            grads = per_task_grads(rows, params)
            set_flat_grad(params, self.aggregate(grads))
        else:
            if self._representation is None:
                raise RuntimeError("rep-mode backward() called without a preceding predict()")
            z, z_leaf = self._representation
            self._representation = None
            grads = per_task_grads(rows, [z_leaf])
            z.backward(self.aggregate(grads).view_as(z))
        return self.diagnostics(grads)

    def diagnostics(self, grads: Tensor) -> dict[str, float]:
        """Per-task gradient norms and weights; cosine similarities every ``diagnostics_every`` steps."""
        cosines = self.diagnostics_every > 0 and self.step % self.diagnostics_every == 0
        gram = self._gram
        if gram is None and cosines:
            gram = gram_matrix(grads)
        norms = gram.diagonal().clamp_min(0).sqrt() if gram is not None else grads.norm(dim=1)
        logs = {f"grad_norm/{name}": n for name, n in zip(self.task_names, norms.tolist(), strict=True)}
        if self._weights is not None:
            logs.update(self.weight_logs(self._weights))
        if cosines:
            cos = (gram / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(gram.dtype).tiny)).tolist()
            for i, a in enumerate(self.task_names):
                for j in range(i + 1, len(self.task_names)):
                    logs[f"cos/{a}~{self.task_names[j]}"] = cos[i][j]
        if self.has_solver:
            logs[f"solver_failures/{self.name}"] = float(self.solver_failures)
        return logs

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}, mode={self.mode!r}"


class GramWeighting(GradientWeighting):
    """Updates of the form ``d = Σ_k w_k g_k`` whose weights depend on the gradients only through ``G Gᵀ``.

    The K×K problem is solved in float64 on the CPU (a few microseconds); the only P-sized work is one Gram
    product and one weighted sum, so these methods cost little beyond the K backward passes.
    """

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        """The K weights for the float64 CPU Gram matrix ``G Gᵀ``."""
        raise NotImplementedError

    def aggregate(self, grads: Tensor) -> Tensor:
        gram = gram_matrix(grads)
        self.record_gram(gram)
        weights = self.weights_from_gram(gram.to(device="cpu", dtype=torch.float64))
        self.record_weights(weights)
        return weights.to(grads) @ grads


class Stochastic(nn.Module):
    """Mixin for weightings that draw random numbers from a private generator saved in ``state_dict``.

    Put it first among the bases; it takes the keyword ``seed`` and passes every other argument on. ``seed=None``
    draws the seed from the global torch RNG at construction, so the run's ``seed`` (which the app sets before
    building) decides it and repeated runs with one seed repeat exactly.
    """

    def __init__(self, *args: Any, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        self.generator = torch.Generator().manual_seed(seed)

    def get_extra_state(self) -> Any:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"].cpu())

    def permutation(self, n: int) -> list[int]:
        return torch.randperm(n, generator=self.generator).tolist()

    def uniform(self, n: int, device: torch.device) -> Tensor:
        """``n`` draws from U[0, 1) on ``device`` (off the CPU, from a device generator seeded by ours)."""
        if device.type == "cpu":
            return torch.rand(n, generator=self.generator)
        seeded = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, (), generator=self.generator)))
        return torch.rand(n, generator=seeded, device=device)
