"""Joint augmentation of an image and its dense targets (seg, depth, normal), as in mtan / Nash-MTL.

Semantics follow ``RandomScaleCrop`` of mtan's ``create_dataset.py`` (credited there to Jialong Wu, mtan issue
#34; reused by CAGrad, Nash-MTL and LibMTL): pick a scale s from {1.0, 1.2, 1.5}, crop a random
``int(H/s)``×``int(W/s)`` window and resize it back to H×W (image and normals bilinear with aligned corners,
labels and depth nearest); depth is divided by s, since zooming in by s brings the scene s times closer. Then a
horizontal flip with probability 1/2 mirrors every map and negates the x component of the normals.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

SCALES: tuple[float, ...] = (1.0, 1.2, 1.5)

Sample = dict[str, Tensor]
"""``image`` (C×H×W float) and any of ``seg`` (H×W int64), ``depth`` (1×H×W), ``normal`` (3×H×W)."""


def scale_crop(sample: Sample, scale: float, top: int, left: int) -> Sample:
    """Crop the ``int(H/scale)``×``int(W/scale)`` window at (top, left) and resize it back to H×W."""
    height, width = sample["image"].shape[-2:]
    h, w = int(height / scale), int(width / scale)
    size = (height, width)

    def resize(x: Tensor, mode: str) -> Tensor:
        window = x[None, ..., top : top + h, left : left + w]
        if mode == "bilinear":
            return F.interpolate(window, size=size, mode="bilinear", align_corners=True)[0]
        return F.interpolate(window, size=size, mode="nearest")[0]

    out = dict(sample)
    out["image"] = resize(sample["image"], "bilinear")
    if "seg" in sample:
        out["seg"] = resize(sample["seg"][None].float(), "nearest")[0].long()
    if "depth" in sample:
        out["depth"] = resize(sample["depth"], "nearest") / scale
    if "normal" in sample:
        out["normal"] = resize(sample["normal"], "bilinear")
    return out


def hflip(sample: Sample) -> Sample:
    """Mirror every map left-right; the x component of surface normals changes sign."""
    out = {key: value.flip(-1) for key, value in sample.items()}
    if "normal" in out:
        out["normal"][0] = -out["normal"][0]
    return out


def random_scale_crop_flip(
    sample: Sample, scales: Sequence[float] = SCALES, generator: torch.Generator | None = None
) -> Sample:
    """``scale_crop`` at a random scale and position, then ``hflip`` with probability 1/2.

    Draws from torch's RNG (or ``generator``), which DataLoader workers seed per worker, so runs repeat.
    """
    height, width = sample["image"].shape[-2:]
    scale = scales[int(torch.randint(len(scales), (1,), generator=generator))]
    h, w = int(height / scale), int(width / scale)
    top = int(torch.randint(height - h + 1, (1,), generator=generator))
    left = int(torch.randint(width - w + 1, (1,), generator=generator))
    sample = scale_crop(sample, scale, top, left)
    if float(torch.rand((), generator=generator)) < 0.5:
        sample = hflip(sample)
    return sample
