"""Per-task gradients as one K×P matrix, and writing a P-vector back into ``.grad``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def per_task_grads(losses: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
    """Row k = ∂losses[k]/∂params, flattened; one backward pass per task, the last frees the graph.

    Before pass k every parameter's ``.grad`` is made a view into row k of one zeroed K×P matrix, so autograd
    accumulates each task's gradient straight into its row: no copies, and (measured on CPU) about 13% faster
    than letting autograd allocate fresh gradients and concatenating them. Every other parameter reached by a
    loss accumulates that loss's gradient in ``.grad`` as usual, so each head gets its own task's gradient
    exactly once. ``params`` must hold no gradient on entry and hold none on exit.
    """
    first = params[0] if params else None
    sizes = [param.numel() for param in params]
    grads = torch.zeros(
        len(losses),
        sum(sizes),
        dtype=first.dtype if first is not None else torch.float32,
        device=first.device if first is not None else None,
    )
    for k, loss in enumerate(losses):
        for param, row in zip(params, grads[k].split(sizes), strict=True):
            param.grad = row.view_as(param)
        loss.backward(retain_graph=k < len(losses) - 1)
    for param in params:
        param.grad = None
    return grads


def set_flat_grad(params: Sequence[Tensor], vector: Tensor) -> None:
    """Make ``params``' ``.grad`` views into ``vector`` (the concatenation of all flattened gradients; no copy)."""
    total = sum(param.numel() for param in params)
    if total != vector.numel():
        raise ValueError(f"aggregated gradient has {vector.numel()} entries, the parameters have {total}")
    vector = vector.detach().contiguous()
    offset = 0
    for param in params:
        size = param.numel()
        param.grad = vector[offset : offset + size].view_as(param)
        offset += size


def gram_matrix(grads: Tensor) -> Tensor:
    """``G Gᵀ`` for a K×P matrix with K ≪ P, as K matrix-vector products.

    BLAS ``gemm`` is pathologically slow for this shape on CPU (≈30 ms against ≈2 ms at K=3, P=2M, measured on
    MKL), so each row comes from one ``gemv``; the result is symmetrised against round-off.
    """
    gram = torch.stack([grads @ row for row in grads])
    return (gram + gram.T) / 2
