"""Scenes generator: determinism, target formats, label consistency, geometry of depth and normals, loaders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from mtl.data import scenes
from mtl.data.scenes import (
    SCENES_MEAN,
    SCENES_STD,
    SHAPES,
    ScenesData,
    ScenesDataset,
    min_visible_pixels,
    pixel_rays,
    render_scenes,
)
from mtl.errors import ConfigError, DataError

SIZE = 64
MAX_OBJECTS = 4


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Small tensors: one thread is faster, and steadier on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    return render_scenes(48, SIZE, 1, MAX_OBJECTS, generator=torch.Generator().manual_seed(123))


def objects(batch: dict[str, torch.Tensor]) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(image index, instance id, pixel mask) of every object."""
    for i, count in enumerate(batch["count"].tolist()):
        for j in range(1, count + 1):
            yield i, j, batch["instance"][i] == j


def test_render_shapes_and_dtypes(batch: dict[str, torch.Tensor]) -> None:
    n = 48
    expected = {
        "image": ((n, 3, SIZE, SIZE), torch.uint8),
        "seg": ((n, SIZE, SIZE), torch.int64),
        "depth": ((n, 1, SIZE, SIZE), torch.float32),
        "normal": ((n, 3, SIZE, SIZE), torch.float32),
        "count": ((n,), torch.int64),
        "sequence": ((n, MAX_OBJECTS), torch.int64),
        "instance": ((n, SIZE, SIZE), torch.int64),
        "ground_depth": ((n, 1, SIZE, SIZE), torch.float32),
    }
    assert set(batch) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert tuple(batch[key].shape) == shape, key
        assert batch[key].dtype == dtype, key


def test_value_ranges(batch: dict[str, torch.Tensor]) -> None:
    assert SHAPES == ("sphere", "cube", "pyramid", "cylinder")
    assert batch["seg"].min() == 0 and batch["seg"].max() <= len(SHAPES)
    assert torch.isfinite(batch["depth"]).all() and (batch["depth"] > 0).all()
    assert torch.isfinite(batch["ground_depth"]).all() and (batch["ground_depth"] > 0).all()
    assert set(batch["count"].tolist()) == set(range(1, MAX_OBJECTS + 1))
    assert batch["sequence"].min() >= 0 and batch["sequence"].max() <= len(SHAPES)
    # images use the dynamic range without saturating everywhere
    assert batch["image"].float().std() > 10


def test_same_seed_is_bit_identical_and_seeds_differ() -> None:
    a, b = ScenesDataset(24, seed=7), ScenesDataset(24, seed=7)
    c = ScenesDataset(24, seed=8)
    for name in ("images", "seg", "depth", "normal", "count", "sequence"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.depth, c.depth)


def test_sequence_count_and_seg_agree(batch: dict[str, torch.Tensor]) -> None:
    for i in range(len(batch["count"])):
        count = int(batch["count"][i])
        sequence = batch["sequence"][i]
        assert (sequence[:count] > 0).all() and (sequence[count:] == 0).all()
        assert int((sequence > 0).sum()) == count
        seg_classes = set(batch["seg"][i].unique().tolist()) - {0}
        assert seg_classes == set(sequence.tolist()) - {0}
        assert int(batch["instance"][i].max()) == count


def test_every_object_is_visible_with_its_class(batch: dict[str, torch.Tensor]) -> None:
    assert min_visible_pixels(SIZE, MAX_OBJECTS) == 12
    for i, j, mask in objects(batch):
        assert int(mask.sum()) >= 12, (i, j)
        assert (batch["seg"][i][mask] == batch["sequence"][i, j - 1]).all(), (i, j)
    assert torch.equal(batch["seg"] > 0, batch["instance"] > 0)


def test_instances_are_ordered_left_to_right(batch: dict[str, torch.Tensor]) -> None:
    columns = torch.arange(SIZE, dtype=torch.float32).expand(SIZE, SIZE)
    for i, count in enumerate(batch["count"].tolist()):
        means = [float(columns[batch["instance"][i] == j].mean()) for j in range(1, count + 1)]
        assert means == sorted(means) and len(set(means)) == count, (i, means)


def test_objects_stand_in_front_of_the_ground(batch: dict[str, torch.Tensor]) -> None:
    depth, ground = batch["depth"][:, 0], batch["ground_depth"][:, 0]
    on_object = batch["instance"] > 0
    assert (depth[on_object] < ground[on_object]).all()
    assert torch.equal(depth[~on_object], ground[~on_object])


def test_normals_are_unit_and_face_the_camera(batch: dict[str, torch.Tensor]) -> None:
    normal = batch["normal"]
    assert torch.allclose(normal.norm(dim=1), torch.ones(1), atol=1e-4)
    view = pixel_rays(SIZE)  # camera -> scene direction of each pixel, camera frame
    assert ((normal * view).sum(dim=1) < 0).all()


def test_ground_is_one_plane_below_the_camera(batch: dict[str, torch.Tensor]) -> None:
    points = batch["depth"] * pixel_rays(SIZE)  # camera-frame 3-D points
    for i in range(len(points)):
        ground = batch["instance"][i] == 0
        normals = batch["normal"][i][:, ground]
        assert torch.allclose(normals, normals[:, :1].expand_as(normals), atol=1e-5)
        offset = (normals * points[i][:, ground]).sum(dim=0)  # n·p = -camera height for every ground point
        assert torch.allclose(offset, offset[:1].expand_as(offset), atol=2e-4)
        assert 1.2 - 1e-3 <= -float(offset[0]) <= 2.0 + 1e-3


def fit_centre_and_radius(points: torch.Tensor, normals: torch.Tensor) -> tuple[float, float]:
    """Least-squares c, r with points = c + r * normals (K×3 each); returns (r, max residual)."""
    p, n = points.double(), normals.double()
    design = torch.cat([torch.eye(3, dtype=torch.float64).repeat(len(p), 1), n.reshape(-1, 1)], dim=1)
    solution = torch.linalg.lstsq(design, p.reshape(-1, 1)).solution
    return float(solution[3]), float((design @ solution - p.reshape(-1, 1)).abs().max())


def test_sphere_normals_are_analytic(batch: dict[str, torch.Tensor]) -> None:
    """Every sphere pixel p and normal n satisfy p = c + r n for one centre c and radius r."""
    points = batch["depth"] * pixel_rays(SIZE)
    spheres = 0
    for i, j, mask in objects(batch):
        if batch["sequence"][i, j - 1] != SHAPES.index("sphere") + 1:
            continue
        radius, residual = fit_centre_and_radius(points[i][:, mask].T, batch["normal"][i][:, mask].T)
        assert radius > 0.05 and residual < 1e-3 * max(radius, 1.0), (i, j, radius, residual)
        spheres += 1
    assert spheres >= 5


def test_upright_shapes_have_consistent_normals(batch: dict[str, torch.Tensor]) -> None:
    """Relative to "up" (the ground normal): cube and cylinder faces are level or vertical, a pyramid's faces
    all have the same slope, and a cylinder's side is a round vertical surface around one axis."""
    points = batch["depth"] * pixel_rays(SIZE)
    seen = set()
    for i, j, mask in objects(batch):
        shape = SHAPES[int(batch["sequence"][i, j - 1]) - 1]
        up = batch["normal"][i][:, batch["instance"][i] == 0][:, 0]
        normals = batch["normal"][i][:, mask].T
        slope = normals @ up
        if shape in ("cube", "cylinder"):
            assert ((slope.abs() < 1e-4) | (slope > 1 - 1e-5)).all(), (i, j, shape)
        if shape == "pyramid":
            assert (slope > 0.1).all() and (slope < 0.9).all() and slope.max() - slope.min() < 1e-4, (i, j)
        if shape == "cylinder" and (side := slope.abs() < 1e-4).sum() >= 4:
            flat = torch.eye(3) - up[:, None] * up[None, :]  # project along the axis
            radius, residual = fit_centre_and_radius(points[i][:, mask].T[side] @ flat, normals[side])
            assert radius > 0.05 and residual < 1e-3 * max(radius, 1.0), (i, j, radius, residual)
        seen.add(shape)
    assert seen >= {"cube", "cylinder", "pyramid"}


def test_flat_shapes_have_few_distinct_normals(batch: dict[str, torch.Tensor]) -> None:
    """A cube shows at most 3 faces and a pyramid at most 4, each with one normal."""
    limits = {SHAPES.index("cube") + 1: 3, SHAPES.index("pyramid") + 1: 4}
    checked = 0
    for i, j, mask in objects(batch):
        limit = limits.get(int(batch["sequence"][i, j - 1]))
        if limit is None:
            continue
        distinct = (batch["normal"][i][:, mask].T * 1000).round().unique(dim=0)
        assert 1 <= len(distinct) <= limit, (i, j, distinct)
        checked += 1
    assert checked >= 5


def test_objects_are_shaded(batch: dict[str, torch.Tensor]) -> None:
    """Curved objects show a range of brightness (Lambertian shading), not one flat colour."""
    curved = {SHAPES.index("sphere") + 1}
    spreads = [
        float(batch["image"][i][:, mask].float().sum(dim=0).std())
        for i, j, mask in objects(batch)
        if int(batch["sequence"][i, j - 1]) in curved and mask.sum() >= 30
    ]
    assert spreads and min(spreads) > 3


def test_dataset_items_are_normalised_with_documented_formats() -> None:
    data = ScenesDataset(16, image_size=32, min_objects=2, max_objects=3, seed=3)
    assert len(data) == 16
    image, targets = data[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    mean, std = torch.tensor(SCENES_MEAN).view(3, 1, 1), torch.tensor(SCENES_STD).view(3, 1, 1)
    assert torch.allclose(image, (data.images[5].float() / 255 - mean) / std)
    assert set(targets) == {"seg", "depth", "normal", "count", "sequence"}
    assert targets["seg"].shape == (32, 32) and targets["seg"].dtype == torch.int64
    assert targets["depth"].shape == (1, 32, 32) and targets["depth"].dtype == torch.float32
    assert targets["normal"].shape == (3, 32, 32) and targets["normal"].dtype == torch.float32
    assert torch.allclose(targets["normal"].norm(dim=0), torch.ones(1), atol=1e-5)
    assert targets["count"].shape == () and targets["count"].dtype == torch.int64
    assert 2 <= int(targets["count"]) <= 3
    assert targets["sequence"].shape == (3,) and targets["sequence"].dtype == torch.int64


def test_scenes_data_loaders_batch_dicts() -> None:
    data = ScenesData(batch_size=8, train_size=20, val_size=12, image_size=32, seed=1, eval_batch_size=6)
    assert data.input_shape == (3, 32, 32)
    assert data.task_names == ("seg", "depth", "normal", "count", "sequence")
    data.check_tasks(["seg", "count"])
    with pytest.raises(ConfigError, match="not provided"):
        data.check_tasks(["edges"])
    images, targets = next(iter(data.train_loader(torch.Generator().manual_seed(0))))
    assert images.shape == (8, 3, 32, 32)
    assert targets["seg"].shape == (8, 32, 32) and targets["depth"].shape == (8, 1, 32, 32)
    assert targets["normal"].shape == (8, 3, 32, 32)
    assert targets["count"].shape == (8,) and targets["sequence"].shape == (8, 4)
    val_batches = list(data.val_loader())
    assert [len(b[0]) for b in val_batches] == [6, 6]
    assert len(list(data.train_loader())) == 2  # drop_last with 20 images in batches of 8
    assert not torch.equal(data.train_dataset.images[:12], data.val_dataset.images)


def test_classes_must_match_the_generator() -> None:
    ScenesData(train_size=2, val_size=2, image_size=16, max_objects=3, classes={"seg": 5, "count": 4, "sequence": 4})
    with pytest.raises(ConfigError, match="count"):
        ScenesData(train_size=2, val_size=2, image_size=16, max_objects=3, classes={"count": 5})
    with pytest.raises(ConfigError, match="unknown key"):
        ScenesData(train_size=2, val_size=2, image_size=16, classes={"depth": 1})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_size": 8},
        {"min_objects": 0},
        {"min_objects": 3, "max_objects": 2},
        {"max_objects": 9},
        {"train_size": 0},
        {"val_size": 0},
        {"batch_size": 0},
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ScenesData(**{"train_size": 2, "val_size": 2, "image_size": 16, **kwargs})


def test_render_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        render_scenes(2, image_size=15)
    with pytest.raises(ConfigError, match="num_images"):
        render_scenes(0)


def test_impossible_visibility_raises_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redraws are bounded: a scene that can never pass the checks fails loudly instead of looping."""
    monkeypatch.setattr(scenes, "min_visible_pixels", lambda image_size, max_objects: image_size**2 + 1)
    monkeypatch.setattr(scenes, "MAX_ATTEMPTS", 2)
    with pytest.raises(DataError, match="visible"):
        render_scenes(3, image_size=16)
