"""Per-task gradients as one K×P matrix, and writing a P-vector back into ``.grad``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def per_task_grads(losses: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
    """Row k = ∂losses[k]/∂params, flattened; one backward pass per task, the last frees the graph.

    Every other parameter reached by a loss accumulates that loss's gradient in ``.grad`` as usual, so each
    head gets its own task's gradient exactly once. ``params`` must hold no gradient on entry (it is taken
    out after every pass so the rows do not mix).
    """
    sizes = [p.numel() for p in params]
    first = params[0] if params else None
    grads = torch.zeros(
        len(losses),
        sum(sizes),
        dtype=first.dtype if first is not None else torch.float32,
        device=first.device if first is not None else None,
    )
    for k, loss in enumerate(losses):
        loss.backward(retain_graph=k < len(losses) - 1)
        offset = 0
        for param, size in zip(params, sizes, strict=True):
            if param.grad is not None:
                grads[k, offset : offset + size] = param.grad.reshape(-1)
                param.grad = None
            offset += size
    return grads


def set_flat_grad(params: Sequence[Tensor], vector: Tensor) -> None:
    """Write ``vector`` (the concatenation of all flattened gradients) into ``params``' ``.grad``."""
    offset = 0
    for param in params:
        size = param.numel()
        param.grad = vector[offset : offset + size].view_as(param).clone()
        offset += size
    if offset != vector.numel():
        raise ValueError(f"aggregated gradient has {vector.numel()} entries, the parameters have {offset}")
