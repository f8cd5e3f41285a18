"""Scenes: a procedural, deterministic multi-task data set rendered in memory by vectorised ray casting.

Every image shows 1 to ``max_objects`` solids (sphere, cube, pyramid, cylinder) standing on a tilted ground
plane, seen by a pinhole camera pitched down so that every pixel ray hits the ground or an object. One render
yields five aligned targets: semantic segmentation, z-depth, camera-frame surface normals, the object count
and the left-to-right sequence of object classes. See docs/scenes.md for the full description.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtl.data.base import DataModule
from mtl.errors import ConfigError, DataError

SHAPES: tuple[str, ...] = ("sphere", "cube", "pyramid", "cylinder")
"""Object shapes; the segmentation / sequence class id of a shape is its index + 1 (0 = ground)."""

SCENES_MEAN: tuple[float, float, float] = (0.4091, 0.4139, 0.4210)
"""Per-channel mean of the [0, 1] RGB images (measured on 4096 images, seed 0, 64×64, 1-4 objects)."""

SCENES_STD: tuple[float, float, float] = (0.0862, 0.0868, 0.0873)
"""Per-channel standard deviation of the [0, 1] RGB images (same sample as ``SCENES_MEAN``)."""

FOG_COLOUR = torch.tensor([0.75, 0.78, 0.82])
"""Colour that distant surfaces fade to (aerial perspective)."""

FOV_DEGREES = 50.0
"""Full horizontal (= vertical, images are square) field of view of the pinhole camera."""

CHUNK_SIZE = 256
"""Scenes drawn per step of the random stream (and rendered together at 64×64 or less)."""

RENDER_PIXELS = 256 * 64 * 64
"""Pixels ray-cast per vectorised batch: bounds peak memory (~250 MB) whatever the image size."""

MAX_ATTEMPTS = 100
"""Rejection-sampling rounds before giving up on scenes whose objects are not all clearly visible."""

_TAN_HALF_FOV = math.tan(math.radians(FOV_DEGREES / 2))
# Height of each shape's visual centre above the ground, in units of its size, as a + b * aspect (see the
# shape functions: sphere radius = size; cube half-side 0.8 size; pyramid apex at 1.6 size (0.9 + 0.6 aspect),
# centred a third of the way up; cylinder height 2 size (0.6 + 0.8 aspect)).
_CENTRE_HEIGHT = torch.tensor([1.0, 0.8, 0.48, 0.6])
_CENTRE_HEIGHT_ASPECT = torch.tensor([0.0, 0.0, 0.32, 0.8])
_EPS = 1e-9
_INF = float("inf")


def min_visible_pixels(image_size: int, max_objects: int) -> int:
    """Fewest pixels each object must show: 12 at 64×64 with up to 4 objects, scaled with pixel and slot area."""
    return max(1, round(12 * (image_size / 64) ** 2 * min(1.0, 4 / max_objects)))


def pixel_rays(image_size: int) -> Tensor:
    """Camera-frame ray directions (3×H×W, x right, y up, z = -1) through the pixel centres.

    Because the z component is -1, a hit at ray parameter ``t`` lies at z-depth ``t``: ``depth * rays`` is the
    camera-frame 3-D point seen by each pixel.
    """
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size * 2 - 1
    u = coords[None, :].expand(image_size, image_size)
    v = -coords[:, None].expand(image_size, image_size)
    return torch.stack([u * _TAN_HALF_FOV, v * _TAN_HALF_FOV, -torch.ones_like(u)])


def _check_args(image_size: int, min_objects: int, max_objects: int) -> None:
    if image_size < 16:
        raise ConfigError(f"data.image_size must be >= 16 pixels, got {image_size}")
    if not 1 <= min_objects <= max_objects <= 8:
        raise ConfigError(
            "data.min_objects and data.max_objects must satisfy 1 <= min_objects <= max_objects <= 8, "
            f"got min_objects={min_objects}, max_objects={max_objects}"
        )


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV (all in [0, 1]) to RGB, stacked on a new last dimension."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v[..., None] * (1 - s[..., None] * weight)


def _rotation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """World-from-camera rotations (N×3×3): roll about the optical axis, pitch down, then yaw about world y."""
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)

    def mat(rows: list[list[Tensor]]) -> Tensor:
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    cr, sr = torch.cos(roll), torch.sin(roll)
    cp, sp = torch.cos(-pitch), torch.sin(-pitch)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    rz = mat([[cr, -sr, zero], [sr, cr, zero], [zero, zero, one]])
    rx = mat([[one, zero, zero], [zero, cp, -sp], [zero, sp, cp]])
    ry = mat([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    return ry @ rx @ rz


def _sample(n: int, min_objects: int, max_objects: int, gen: torch.Generator | None) -> dict:
    """Draw the random parameters of ``n`` scenes: camera, light, ground, and one object per occupied slot."""

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    k = max_objects
    count = torch.randint(min_objects, max_objects + 1, (n,), generator=gen)
    rank = torch.rand(n, k, generator=gen).argsort(dim=1).argsort(dim=1)
    active = rank < count[:, None]
    shape = torch.randint(0, len(SHAPES), (n, k), generator=gen)

    height = uniform(1.45, 1.55, n)
    pitch = torch.deg2rad(uniform(35.0, 55.0, n))
    roll = torch.deg2rad(uniform(-6.0, 6.0, n))
    yaw = uniform(0.0, 2 * math.pi, n)
    rotation = _rotation(yaw, pitch, roll)

    # Slots split the horizontal field of view (normalised u in [-1, 1]). Each object is sized so that its
    # projected half-width is a fraction of its slot's, and placed so that its mid-height point projects to a
    # jittered u inside the slot: centring the middle rather than the base keeps tall objects, which lean
    # outwards in this downward-looking perspective, inside their slot.
    half_slot = min(1.0 / k, 0.3)
    half_width = uniform(0.55, 0.85, n, k) * half_slot
    slack = 1.0 / k - half_width
    u = -1 + (2 * torch.arange(k) + 1) / k + uniform(-0.5, 0.5, n, k) * slack
    v = uniform(-0.7, 0.25, n, k)
    aspect = uniform(0.0, 1.0, n, k)
    size_per_depth = half_width * _TAN_HALF_FOV  # object size (world units) per unit of z-depth
    centre_height = _CENTRE_HEIGHT[shape] + _CENTRE_HEIGHT_ASPECT[shape] * aspect  # in units of size
    cam = torch.stack([u * _TAN_HALF_FOV, v * _TAN_HALF_FOV, -torch.ones_like(u)], dim=-1)  # n×k×3
    world = (rotation[:, None] * cam[:, :, None, :]).sum(-1)
    # Mid-height point on this ray: height - t * (-dy) = centre_height * size, with size = size_per_depth * t.
    t = height[:, None] / (-world[..., 1] + centre_height * size_per_depth)

    return {
        "count": count,
        "active": active,
        "shape": shape,
        "height": height,
        "rotation": rotation,
        "cx": t * world[..., 0],
        "cz": t * world[..., 2],
        "size": size_per_depth * t,
        "spin": uniform(0.0, math.pi / 2, n, k),
        "aspect": aspect,
        "colour": _hsv_to_rgb(uniform(0, 1, n, k), uniform(0.55, 0.95, n, k), uniform(0.55, 0.95, n, k)),
        "ground": _hsv_to_rgb(uniform(0, 1, n), uniform(0.0, 0.25, n), uniform(0.3, 0.55, n)),
        "checker_size": uniform(0.9, 1.1, n),
        "checker_amp": uniform(0.08, 0.16, n),
        "checker_offset": uniform(0.0, 10.0, n, 2),
        "light": _light(uniform(35.0, 70.0, n), uniform(0.0, 360.0, n)),
        "ambient": uniform(0.25, 0.45, n),
        "fog_density": uniform(0.06, 0.1, n),
    }


def _light(elevation_deg: Tensor, azimuth_deg: Tensor) -> Tensor:
    """Unit direction towards the light (N×3, world frame)."""
    el, az = torch.deg2rad(elevation_deg), torch.deg2rad(azimuth_deg)
    return torch.stack([torch.cos(el) * torch.cos(az), torch.sin(el), torch.cos(el) * torch.sin(az)], dim=-1)


def _safe(x: Tensor) -> Tensor:
    """Divisor without zeros (rays parallel to a face)."""
    return torch.where(x.abs() < _EPS, torch.full_like(x, _EPS), x)


Hit = tuple[Tensor, Tensor, Tensor, Tensor]
"""Ray parameter of the first hit (inf where missed) and the world-frame unit normal there (x, y, z)."""


def _finish(t_in: Tensor, t_out: Tensor, nx: Tensor, ny: Tensor, nz: Tensor) -> Hit:
    hit = (t_in < t_out) & (t_in > 0)
    return torch.where(hit, t_in, _INF), nx, ny, nz


def _slab(o: Tensor, d: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Entry/exit ray parameters of the slab lo <= x <= hi, and the sign of the entering face's normal."""
    d = _safe(d)
    t1, t2 = (lo - o) / d, (hi - o) / d
    return torch.minimum(t1, t2), torch.maximum(t1, t2), -torch.sign(d)


def _sphere(o: tuple[Tensor, ...], d: tuple[Tensor, ...], size: Tensor, aspect: Tensor, spin: Tensor) -> Hit:
    ox, oy, oz = o[0], o[1] - size, o[2]  # origin relative to the centre, which is one radius above the ground
    dx, dy, dz = d
    a = dx * dx + dy * dy + dz * dz
    b = dx * ox + dy * oy + dz * oz
    c = ox * ox + oy * oy + oz * oz - size * size
    disc = b * b - a * c
    t = (-b - torch.sqrt(disc.clamp(min=0))) / a
    t = torch.where(disc > 0, t, -1.0)
    px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
    norm = torch.sqrt(px * px + py * py + pz * pz).clamp(min=_EPS)
    return _finish(t, torch.full_like(t, _INF), px / norm, py / norm, pz / norm)


def _cube(o: tuple[Tensor, ...], d: tuple[Tensor, ...], size: Tensor, aspect: Tensor, spin: Tensor) -> Hit:
    half = 0.8 * size
    cs, sn = torch.cos(spin), torch.sin(spin)
    t_in, t_out, sx = _slab(o[0] * cs + o[2] * sn, d[0] * cs + d[2] * sn, -half, half)
    nx, ny, nz = sx * cs, torch.zeros_like(t_in), sx * sn
    axes = (
        (o[2] * cs - o[0] * sn, d[2] * cs - d[0] * sn, -sn, 0.0, cs),
        (o[1], d[1], 0.0, 1.0, 0.0),
    )
    lo_hi = ((-half, half), (torch.zeros_like(half), 2 * half))
    for (oe, de, ex, ey, ez), (lo, hi) in zip(axes, lo_hi, strict=True):
        near, far, sign = _slab(oe, de, lo, hi)
        enter = near > t_in
        t_in, t_out = torch.where(enter, near, t_in), torch.minimum(t_out, far)
        nx = torch.where(enter, sign * ex, nx)
        ny = torch.where(enter, sign * ey, ny)
        nz = torch.where(enter, sign * ez, nz)
    return _finish(t_in, t_out, nx, ny, nz)


def _pyramid(o: tuple[Tensor, ...], d: tuple[Tensor, ...], size: Tensor, aspect: Tensor, spin: Tensor) -> Hit:
    # Four slanted half-spaces through the base edges and the apex; the base (y >= 0) is implied because the
    # ground plane is hit before any point below it.
    base = 0.8 * size
    height = 2 * base * (0.9 + 0.6 * aspect)
    length = torch.sqrt(height * height + base * base)
    cs, sn = torch.cos(spin), torch.sin(spin)
    t_in = torch.full_like(d[0], -_INF)
    t_out = torch.full_like(d[0], _INF)
    nx, ny, nz = torch.zeros_like(t_in), torch.zeros_like(t_in), torch.zeros_like(t_in)
    for ex, ez in ((cs, sn), (-cs, -sn), (-sn, cs), (sn, -cs)):
        # normal ∝ height * e + base * y; plane passes through base * e: n·(o + t d - base e) <= 0
        num = height * base - (height * (ex * o[0] + ez * o[2]) + base * o[1])
        den = _safe(height * (ex * d[0] + ez * d[2]) + base * d[1])
        t = num / den
        enter = (den < 0) & (t > t_in)
        t_in = torch.where(enter, t, t_in)
        t_out = torch.where(den > 0, torch.minimum(t_out, t), t_out)
        nx = torch.where(enter, height * ex / length, nx)
        ny = torch.where(enter, base / length, ny)
        nz = torch.where(enter, height * ez / length, nz)
    return _finish(t_in, t_out, nx, ny, nz)


def _cylinder(o: tuple[Tensor, ...], d: tuple[Tensor, ...], size: Tensor, aspect: Tensor, spin: Tensor) -> Hit:
    radius = 0.9 * size
    height = 2 * size * (0.6 + 0.8 * aspect)
    ox, oy, oz = o
    dx, dy, dz = d
    a = (dx * dx + dz * dz).clamp(min=_EPS)
    b = dx * ox + dz * oz
    c = ox * ox + oz * oz - radius * radius
    disc = b * b - a * c
    root = torch.sqrt(disc.clamp(min=0))
    t_in = torch.where(disc > 0, (-b - root) / a, _INF)
    t_out = torch.where(disc > 0, (-b + root) / a, -_INF)
    nx, ny, nz = (ox + t_in * dx) / radius, torch.zeros_like(t_in), (oz + t_in * dz) / radius
    near, far, sign = _slab(oy, dy, torch.zeros_like(height), height)
    cap = near > t_in
    t_in, t_out = torch.where(cap, near, t_in), torch.minimum(t_out, far)
    nx, nz = torch.where(cap, 0.0, nx), torch.where(cap, 0.0, nz)
    ny = torch.where(cap, sign, ny)
    norm = torch.sqrt(nx * nx + ny * ny + nz * nz).clamp(min=_EPS)
    return _finish(t_in, t_out, nx / norm, ny / norm, nz / norm)


_INTERSECT: tuple[Callable[..., Hit], ...] = (_sphere, _cube, _pyramid, _cylinder)


def _window(slot: int, slots: int, image_size: int) -> tuple[int, int]:
    """Pixel columns [c0, c1) rendered for a slot: the slot plus a margin, shifted to stay inside the image."""
    slot_px = image_size / slots
    margin = math.ceil(0.15 * slot_px) + 1
    width = min(image_size, math.ceil(slot_px) + 2 * margin)
    c0 = min(max(math.floor(slot * slot_px) - margin, 0), image_size - width)
    return c0, c0 + width


def _world_rays(rotation: Tensor, image_size: int, c0: int, c1: int) -> Tensor:
    """World-frame ray directions (N×3×H×(c1-c0)) through the pixels of columns [c0, c1), camera z = -1.

    ``R @ (u t, v t, -1)`` is split into a column term and a row term so that each output needs one add.
    """
    rays = pixel_rays(image_size)
    u, v = rays[0, 0, c0:c1], rays[1, :, 0]
    col = rotation[:, :, 0, None] * u - rotation[:, :, 2, None]  # N×3×W
    row = rotation[:, :, 1, None] * v  # N×3×H
    return row[..., None] + col[:, :, None, :]


def _render(p: dict, image_size: int, min_pixels: int) -> tuple[dict[str, Tensor], Tensor]:
    """Ray-cast the scenes described by ``p``; returns the targets and which scenes pass the visibility checks."""
    active, shape = p["active"], p["shape"]
    n, slots = active.shape
    size = image_size
    rotation = p["rotation"]
    dirs = _world_rays(rotation, size, 0, size)  # n×3×H×W
    cam_height = p["height"]

    t_ground = cam_height[:, None, None] / -dirs[:, 1]
    t_best = t_ground.clone()
    hit_slot = torch.full((n, size, size), -1, dtype=torch.long)
    normal = torch.zeros(n, 3, size, size)
    normal[:, 1] = 1.0
    clipped = torch.zeros(n, dtype=torch.bool)

    for slot in range(slots):
        c0, c1 = _window(slot, slots, size)
        t_slot = torch.full((n, size, c1 - c0), _INF)
        n_slot = torch.empty(n, 3, size, c1 - c0)  # only read where t_slot is finite, i.e. written
        for kind, intersect in enumerate(_INTERSECT):
            idx = torch.nonzero(active[:, slot] & (shape[:, slot] == kind)).squeeze(1)
            if idx.numel() == 0:
                continue
            d = _world_rays(rotation[idx], size, c0, c1).unbind(1)

            def col(name: str, idx: Tensor = idx, slot: int = slot) -> Tensor:
                return p[name][idx, slot][:, None, None]

            origin = (-col("cx"), cam_height[idx][:, None, None], -col("cz"))
            t, nx, ny, nz = intersect(origin, d, col("size"), col("aspect"), col("spin"))
            t_slot[idx] = t
            n_slot[idx] = torch.stack([nx, ny, nz], dim=1)

        t_slot = torch.where(t_slot < t_ground[:, :, c0:c1], t_slot, _INF)  # hits below the ground are unseen
        # An object touching a window edge that is not the image edge may be cut off: reject its scene.
        if c0 > 0:
            clipped |= torch.isfinite(t_slot[:, :, 0]).any(dim=1)
        if c1 < size:
            clipped |= torch.isfinite(t_slot[:, :, -1]).any(dim=1)
        current = t_best[:, :, c0:c1]
        closer = t_slot < current
        t_best[:, :, c0:c1] = torch.where(closer, t_slot, current)
        hit_slot[:, :, c0:c1] = torch.where(closer, slot, hit_slot[:, :, c0:c1])
        normal[:, :, :, c0:c1] = torch.where(closer[:, None], n_slot, normal[:, :, :, c0:c1])

    on_object = hit_slot >= 0
    flat_slot = hit_slot.clamp(min=0).view(n, -1)
    instance_of_slot = active.cumsum(dim=1) * active
    instance = torch.where(on_object, instance_of_slot.gather(1, flat_slot).view(n, size, size), 0)
    seg = torch.where(on_object, (shape + 1).gather(1, flat_slot).view(n, size, size), 0)
    colour = p["colour"].transpose(1, 2).gather(2, flat_slot[:, None].expand(n, 3, -1)).view(n, 3, size, size)

    # Albedo: object colour, or the ground colour modulated by a faint world-space checker.
    gx = t_ground * dirs[:, 0] + p["checker_offset"][:, 0, None, None]
    gz = t_ground * dirs[:, 2] + p["checker_offset"][:, 1, None, None]
    cell = p["checker_size"][:, None, None]
    checker = (torch.floor(gx / cell) + torch.floor(gz / cell)) % 2 * 2 - 1
    ground = p["ground"][:, :, None, None] * (1 + p["checker_amp"][:, None, None, None] * checker[:, None])
    albedo = torch.where(on_object[:, None], colour, ground)
    lambert = (normal * p["light"][:, :, None, None]).sum(dim=1).clamp(min=0)
    ambient = p["ambient"][:, None, None]
    rgb = albedo * (ambient + (1 - ambient) * lambert)[:, None]
    # Aerial perspective: colours fade towards the fog colour with distance, the cue that makes depth learnable.
    fog = 1 - torch.exp(-p["fog_density"][:, None, None, None] * t_best[:, None])
    rgb = rgb * (1 - fog) + FOG_COLOUR.view(1, 3, 1, 1) * fog
    image = (rgb.clamp(0, 1) * 255).round().to(torch.uint8)

    r = rotation[:, :, :, None, None]
    normal_cam = torch.stack(
        [r[:, 0, i] * normal[:, 0] + r[:, 1, i] * normal[:, 1] + r[:, 2, i] * normal[:, 2] for i in range(3)], dim=1
    )

    order = torch.where(active, torch.arange(slots), slots + torch.arange(slots)).argsort(dim=1)
    filled = torch.arange(slots)[None] < p["count"][:, None]
    sequence = torch.where(filled, (shape + 1).gather(1, order), 0)

    # Checks: every object shows enough pixels, none is cut by its render window, and left-to-right order of
    # the objects' mean columns matches slot order.
    flat = (hit_slot + 1).view(n, -1)
    pixels = torch.zeros(n, slots + 1).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))[:, 1:]
    columns = torch.arange(size, dtype=torch.float32).expand(n, size, size).reshape(n, -1)
    column_sum = torch.zeros(n, slots + 1).scatter_add_(1, flat, columns)[:, 1:]
    mean_column = torch.where(active, column_sum / pixels.clamp(min=1), -_INF)
    previous = torch.cat([torch.full((n, 1), -_INF), mean_column.cummax(dim=1).values[:, :-1]], dim=1)
    ordered = (~active | (mean_column > previous)).all(dim=1)
    visible = (~active | (pixels >= min_pixels)).all(dim=1)
    ok = visible & ordered & ~clipped

    targets = {
        "image": image,
        "seg": seg,
        "depth": t_best[:, None],
        "normal": normal_cam,
        "count": p["count"],
        "sequence": sequence,
        "instance": instance,
        "ground_depth": t_ground[:, None],
    }
    return targets, ok


def _render_batched(p: dict, image_size: int, min_pixels: int) -> tuple[dict[str, Tensor], Tensor]:
    """``_render`` in batches of at most ``RENDER_PIXELS`` pixels; every scene renders independently."""
    n = len(p["count"])
    step = max(1, RENDER_PIXELS // image_size**2)
    if n <= step:
        return _render(p, image_size, min_pixels)
    parts = [
        _render({key: value[start : start + step] for key, value in p.items()}, image_size, min_pixels)
        for start in range(0, n, step)
    ]
    targets = {key: torch.cat([part[0][key] for part in parts]) for key in parts[0][0]}
    return targets, torch.cat([part[1] for part in parts])


def _render_chunk(
    n: int, image_size: int, min_objects: int, max_objects: int, gen: torch.Generator | None
) -> dict[str, Tensor]:
    """Render ``n`` scenes, redrawing (rejection sampling) those that fail the visibility checks."""
    min_pixels = min_visible_pixels(image_size, max_objects)
    result, ok = _render_batched(_sample(n, min_objects, max_objects, gen), image_size, min_pixels)
    pending = torch.nonzero(~ok).squeeze(1)
    for _ in range(MAX_ATTEMPTS):
        if pending.numel() == 0:
            break
        targets, ok = _render_batched(_sample(len(pending), min_objects, max_objects, gen), image_size, min_pixels)
        for key, value in targets.items():
            result[key][pending[ok]] = value[ok]
        pending = pending[~ok]
    if pending.numel() > 0:
        raise DataError(
            f"could not render {len(pending)} scene(s) with every object visible after {MAX_ATTEMPTS} attempts "
            f"(image_size={image_size}, max_objects={max_objects}); use larger images or fewer objects"
        )
    return result


def render_scenes(
    num_images: int,
    image_size: int = 64,
    min_objects: int = 1,
    max_objects: int = 4,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Render a batch of scenes (in chunks of ``CHUNK_SIZE``), deterministic given the generator's state.

    Returns ``image`` (uint8 N×3×H×W), ``seg`` (int64 N×H×W), ``depth`` (float32 N×1×H×W), ``normal`` (float32
    N×3×H×W, camera frame), ``count`` (int64 N), ``sequence`` (int64 N×max_objects), ``instance`` (int64 N×H×W,
    0 = ground, i = i-th object from the left) and ``ground_depth`` (float32 N×1×H×W, ground plane only).
    """
    _check_args(image_size, min_objects, max_objects)
    if num_images < 1:
        raise ConfigError(f"num_images must be >= 1, got {num_images}")
    chunks = [
        _render_chunk(min(CHUNK_SIZE, num_images - start), image_size, min_objects, max_objects, generator)
        for start in range(0, num_images, CHUNK_SIZE)
    ]
    return {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}


class ScenesDataset(Dataset):
    """A fixed split of Scenes, rendered at construction from ``seed`` and kept in memory.

    Storage is compact (uint8 images and labels, float16 normals, float32 depth); ``__getitem__`` returns the
    normalised float image and the targets in their documented dtypes.
    """

    def __init__(
        self, size: int, image_size: int = 64, min_objects: int = 1, max_objects: int = 4, seed: int = 0
    ) -> None:
        _check_args(image_size, min_objects, max_objects)
        if size < 1:
            raise ConfigError(f"Scenes split size must be >= 1, got {size}")
        self.image_size = image_size
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.seed = seed
        gen = torch.Generator().manual_seed(seed)
        h = w = image_size
        self.images = torch.empty(size, 3, h, w, dtype=torch.uint8)
        self.seg = torch.empty(size, h, w, dtype=torch.uint8)
        self.depth = torch.empty(size, 1, h, w, dtype=torch.float32)
        self.normal = torch.empty(size, 3, h, w, dtype=torch.float16)
        self.count = torch.empty(size, dtype=torch.int64)
        self.sequence = torch.empty(size, max_objects, dtype=torch.int64)
        for start in range(0, size, CHUNK_SIZE):
            chunk = _render_chunk(min(CHUNK_SIZE, size - start), image_size, min_objects, max_objects, gen)
            part = slice(start, start + len(chunk["count"]))
            self.images[part] = chunk["image"]
            self.seg[part] = chunk["seg"]
            self.depth[part] = chunk["depth"]
            self.normal[part] = chunk["normal"]
            self.count[part] = chunk["count"]
            self.sequence[part] = chunk["sequence"]
        self._mean = torch.tensor(SCENES_MEAN).view(3, 1, 1)
        self._std = torch.tensor(SCENES_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image = (self.images[index].float() / 255 - self._mean) / self._std
        normal = self.normal[index].float()
        normal = normal / normal.norm(dim=0, keepdim=True)
        targets = {
            "seg": self.seg[index].long(),
            "depth": self.depth[index],
            "normal": normal,
            "count": self.count[index],
            "sequence": self.sequence[index],
        }
        return image, targets


class ScenesData(DataModule):
    """Train and validation splits of Scenes, generated by the same code from two different seeds."""

    task_names = ("seg", "depth", "normal", "count", "sequence")

    VAL_SEED_OFFSET = 1_000_003
    """The validation split uses ``seed + VAL_SEED_OFFSET`` so it never repeats the training scenes."""

    def __init__(
        self,
        batch_size: int = 64,
        train_size: int = 4000,
        val_size: int = 1000,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 4,
        seed: int = 0,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        classes: Mapping | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, eval_batch_size)
        _check_args(image_size, min_objects, max_objects)
        if train_size < 1 or val_size < 1:
            raise ConfigError(
                f"data.train_size and data.val_size must be >= 1, got train_size={train_size}, val_size={val_size}"
            )
        self.classes = {"seg": len(SHAPES) + 1, "count": max_objects + 1, "sequence": len(SHAPES)}
        if classes is not None:
            self._check_classes(classes)
        self.train_dataset = ScenesDataset(train_size, image_size, min_objects, max_objects, seed)
        self.val_dataset = ScenesDataset(val_size, image_size, min_objects, max_objects, seed + self.VAL_SEED_OFFSET)

    def _check_classes(self, classes: Mapping) -> None:
        """Fail when the class counts the task configs read (data.classes) disagree with this generator."""
        for name, value in classes.items():
            if name not in self.classes:
                raise ConfigError(f"data.classes has unknown key {name!r}; Scenes defines {sorted(self.classes)}")
            if value != self.classes[name]:
                raise ConfigError(
                    f"data.classes.{name} = {value} disagrees with the Scenes generator, which has "
                    f"{self.classes[name]} {name} classes (data.classes must be {self.classes})"
                )
