"""The on-disk loaders (NYUv2, CityScapes, CelebA, MultiMNIST, Office) on tiny fixtures written here in each data
set's exact format, the benchmark encoders (SegNet, LeNet), and a few training steps through ``mtl.train.run``."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from mtl.data.celeba import CelebAData
from mtl.data.cityscapes import CityScapesData
from mtl.data.multimnist import MultiMNISTData, overlay_digits
from mtl.data.nyuv2 import NYUv2Data
from mtl.data.office import CyclingBatches, EvenSplitBatches, OfficeData
from mtl.data.transforms import SCALES, hflip, random_scale_crop_flip, scale_crop
from mtl.errors import ConfigError, DataError
from mtl.models import LeNet, SegNet
from mtl.train import run
from tests.conftest import compose_config

SIZE = (16, 24)
NYU_FOLDERS = {"image": 3, "label": None, "depth": 1, "normal": 3}


# ----------------------------------------------------------------------------- fixture writers
def write_dense(root: Path, folders: dict[str, int | None], counts: dict[str, int], num_classes: int) -> None:
    """mtan's layout: root/<split>/<folder>/<i>.npy; labels float with -1 = ignore, depth with 0 = invalid."""
    rng = np.random.default_rng(0)
    h, w = SIZE
    for split, count in counts.items():
        for folder, channels in folders.items():
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                if channels is None:
                    array = rng.integers(-1, num_classes, size=(h, w)).astype(np.float32)
                elif folder == "normal":
                    array = rng.normal(size=(h, w, 3))
                    array /= np.linalg.norm(array, axis=-1, keepdims=True)
                elif folder == "depth":
                    array = rng.uniform(0.5, 10.0, size=(h, w, 1)).astype(np.float32)
                    array[0, 0, 0] = 0.0
                else:
                    array = rng.uniform(0, 1, size=(h, w, channels)).astype(np.float32)
                np.save(root / split / folder / f"{i}.npy", array)


@pytest.fixture
def nyuv2_root(tmp_path: Path) -> Path:
    root = tmp_path / "nyuv2"
    write_dense(root, NYU_FOLDERS, {"train": 4, "val": 2}, 13)
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed MNIST IDX file of unsigned bytes (magic 0x08 type, then the dimensions, big endian)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 40), ("t10k", 20)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=count))
    return tmp_path


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


ATTRIBUTES = [f"Attr_{i}" for i in range(39)] + ["Smiling"]


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    """torchvision's CelebA layout: 4 train, 2 valid, 1 test image."""
    folder = tmp_path / "celeba"
    splits = [0, 0, 0, 0, 1, 1, 2]
    files = [f"{i + 1:06d}.jpg" for i in range(len(splits))]
    rng = np.random.default_rng(1)
    rows = [[1 if v else -1 for v in rng.integers(0, 2, size=40)] for _ in files]
    for i, name in enumerate(files):
        write_jpeg(folder / "img_align_celeba" / name, i, (178 // 8, 218 // 8))
    attr = [str(len(files)), " ".join(ATTRIBUTES)]
    attr += [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(files, rows, strict=True)]
    (folder / "list_attr_celeba.txt").write_text("\n".join(attr) + "\n")
    partition = [f"{name} {split}" for name, split in zip(files, splits, strict=True)]
    (folder / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return tmp_path


OFFICE_SIZES = {"amazon": (5, 3), "dslr": (2, 1), "webcam": (3, 2)}


@pytest.fixture
def office_root(tmp_path: Path) -> Path:
    """Office-31 images and LibMTL split lists (train and val sizes per domain in OFFICE_SIZES)."""
    root = tmp_path / "office-31"
    for domain, (train, val) in OFFICE_SIZES.items():
        for split, count in (("train", train), ("val", val), ("test", 1)):
            lines = []
            for i in range(count):
                relative = f"{domain}/images/class_{i % 3}/frame_{split}_{i:04d}.jpg"
                write_jpeg(root / relative, hash((domain, split, i)) % 1000)
                lines.append(f"{relative} {i % 3}")
            (root / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


# ----------------------------------------------------------------------------- NYUv2 / CityScapes
def test_nyuv2_reads_mtan_arrays_into_task_formats(nyuv2_root: Path) -> None:
    data = NYUv2Data(nyuv2_root, batch_size=2, augment=False, image_size=SIZE)
    assert (len(data.train_dataset), len(data.val_dataset)) == (4, 2)
    image, targets = data.train_dataset[1]
    assert image.dtype == torch.float32 and image.shape == (3, *SIZE)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), np.load(nyuv2_root / "train/image/1.npy"))
    assert targets["seg"].dtype == torch.int64 and targets["seg"].shape == SIZE
    assert torch.equal(targets["seg"], torch.from_numpy(np.load(nyuv2_root / "train/label/1.npy")).long())
    assert int(targets["seg"].min()) == -1 and int(targets["seg"].max()) <= 12
    assert targets["depth"].shape == (1, *SIZE) and float(targets["depth"][0, 0, 0]) == 0.0
    assert targets["normal"].shape == (3, *SIZE)
    torch.testing.assert_close(targets["normal"].norm(dim=0), torch.ones(SIZE))
    images, batch = next(iter(data.train_loader()))
    assert images.shape == (2, 3, *SIZE) and batch["seg"].shape == (2, *SIZE)


def test_cityscapes_reads_the_configured_label_set(tmp_path: Path) -> None:
    folders = {"image": 3, "label_7": None, "label_19": None, "depth": 1}
    write_dense(tmp_path, folders, {"train": 2, "val": 1}, 7)
    (tmp_path / "train/label_19/1.npy").unlink()
    data = CityScapesData(tmp_path, batch_size=1, seg_classes=7, augment=True, image_size=SIZE)
    image, targets = data.train_dataset[0]
    assert set(targets) == {"seg", "depth"} and image.shape == (3, *SIZE)
    with pytest.raises(DataError, match=r"label_19.*1\.npy"):
        CityScapesData(tmp_path, batch_size=1, seg_classes=19, image_size=SIZE)
    with pytest.raises(ConfigError, match="seg_classes"):
        CityScapesData(tmp_path, batch_size=1, seg_classes=8, image_size=SIZE)


def dense_sample() -> dict[str, torch.Tensor]:
    h, w = SIZE
    ramp = torch.arange(h * w, dtype=torch.float32).view(1, h, w)
    normal = torch.nn.functional.normalize(torch.randn(3, h, w, generator=torch.Generator().manual_seed(0)), dim=0)
    return {"image": ramp.repeat(3, 1, 1), "seg": (ramp[0] % 5).long() - 1, "depth": ramp + 1, "normal": normal}


def test_scale_crop_divides_depth_by_the_scale_and_keeps_crop_corners() -> None:
    sample = dense_sample()
    out = scale_crop(sample, scale=1.5, top=3, left=5)
    h, w = int(SIZE[0] / 1.5), int(SIZE[1] / 1.5)
    crop = {key: value[..., 3 : 3 + h, 5 : 5 + w] for key, value in sample.items()}
    assert all(out[key].shape == sample[key].shape for key in sample)
    # nearest resize: every output depth is a crop depth divided by 1.5; corners map to corners
    assert set((out["depth"] * 1.5).round().unique().tolist()) <= set(crop["depth"].unique().tolist())
    torch.testing.assert_close(out["depth"][0, 0, 0], crop["depth"][0, 0, 0] / 1.5)
    torch.testing.assert_close(out["image"][:, -1, -1], crop["image"][:, -1, -1])  # bilinear, aligned corners
    assert out["seg"].dtype == torch.int64 and set(out["seg"].unique().tolist()) <= set(crop["seg"].unique().tolist())
    torch.testing.assert_close(scale_crop(sample, 1.0, 0, 0)["depth"], sample["depth"])


def test_hflip_mirrors_every_map_and_negates_normal_x() -> None:
    sample = dense_sample()
    out = hflip(sample)
    torch.testing.assert_close(out["normal"][0], -sample["normal"][0].flip(-1))
    torch.testing.assert_close(out["normal"][1:], sample["normal"][1:].flip(-1))
    assert torch.equal(out["seg"], sample["seg"].flip(-1))
    torch.testing.assert_close(out["depth"], sample["depth"].flip(-1))
    assert torch.equal(sample["normal"], dense_sample()["normal"])  # the input is left untouched


def test_random_augmentation_uses_every_scale_and_flips() -> None:
    sample = dense_sample()
    generator = torch.Generator().manual_seed(0)
    scales, flips = set(), 0
    for _ in range(40):
        out = random_scale_crop_flip(sample, generator=generator)
        assert out["image"].shape == sample["image"].shape and out["seg"].dtype == torch.int64
        # the smallest depth of a crop is at least the image's smallest depth over the largest scale
        scale = min(SCALES, key=lambda s: abs(float(out["depth"].max()) * s - float(sample["depth"].max())))
        scales.add(scale)
        flips += int(out["normal"][0, 0, 0] != sample["normal"][0, 0, 0])
    assert float(out["depth"].min()) >= 1 / max(SCALES) - 1e-6
    assert 5 < flips < 40 and len(scales) >= 2


def test_nyuv2_missing_root_shows_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)not found; expected layout.*label/<i>\.npy.*288×384"):
        NYUv2Data(tmp_path / "nowhere")


def test_truncated_npy_names_the_file(nyuv2_root: Path) -> None:
    path = nyuv2_root / "train/depth/2.npy"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train/depth/2\.npy.*truncated"):
        NYUv2Data(nyuv2_root, image_size=SIZE)


def test_label_outside_the_class_range_names_the_file(nyuv2_root: Path) -> None:
    labels = np.load(nyuv2_root / "val/label/1.npy")
    labels[3, 4] = 13
    np.save(nyuv2_root / "val/label/1.npy", labels)
    data = NYUv2Data(nyuv2_root, image_size=SIZE)
    data.val_dataset[0]
    with pytest.raises(DataError, match=r"val/label/1\.npy.*\[13\].*0\.\.12 or -1"):
        data.val_dataset[1]


def test_image_of_the_wrong_shape_names_the_file_and_the_expected_shape(nyuv2_root: Path) -> None:
    np.save(nyuv2_root / "train/image/3.npy", np.zeros((*SIZE, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"train/image/3\.npy: array of shape \(16, 24, 4\), expected 16×24×3"):
        NYUv2Data(nyuv2_root, image_size=SIZE)
    with pytest.raises(DataError, match=r"expected 288×384×3"):
        NYUv2Data(nyuv2_root)


def test_empty_or_gappy_split_folder_is_an_error(nyuv2_root: Path) -> None:
    (nyuv2_root / "val/normal/0.npy").unlink()
    with pytest.raises(DataError, match=r"val/normal.*missing e\.g\. 0\.npy"):
        NYUv2Data(nyuv2_root, image_size=SIZE)
    for path in (nyuv2_root / "val/normal").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"val/normal holds no <index>\.npy files; the split is empty"):
        NYUv2Data(nyuv2_root, image_size=SIZE)


def test_class_counts_in_the_config_must_match_the_data(nyuv2_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.classes\.seg = 40"):
        NYUv2Data(nyuv2_root, image_size=SIZE, classes={"seg": 40})


# ----------------------------------------------------------------------------- MultiMNIST
def test_overlay_puts_left_top_left_and_right_shifted_by_six_then_resizes() -> None:
    left = torch.zeros(1, 28, 28, dtype=torch.uint8)
    right = torch.zeros(1, 28, 28, dtype=torch.uint8)
    left[0, 0, 0] = 200
    right[0, 26, 26] = 100  # canvas (32, 32)
    left[0, 10, 10], right[0, 4, 4] = 50, 70  # both at canvas (10, 10): the maximum wins
    out = overlay_digits(left, right)
    assert out.shape == (1, 28, 28) and out.dtype == torch.uint8
    # nearest 36 → 28 with pixel centres: output i reads canvas row floor((i + 0.5) * 36 / 28)
    assert int(out[0, 0, 0]) == 200 and int(out[0, 25, 25]) == 100  # floor(25.5 * 36 / 28) = 32
    assert int(out[0, 8, 8]) == 70  # floor(8.5 * 36 / 28) = 10
    assert int(out.sum()) == 370


def test_multimnist_is_deterministic_from_its_seed(mnist_root: Path) -> None:
    first = MultiMNISTData(mnist_root, batch_size=8, seed=3)
    again = MultiMNISTData(mnist_root, batch_size=8, seed=3)
    other = MultiMNISTData(mnist_root, batch_size=8, seed=4)
    assert torch.equal(first.train_dataset.images, again.train_dataset.images)
    assert not torch.equal(first.train_dataset.right, other.train_dataset.right)
    assert not torch.equal(first.train_dataset.right, first.val_dataset.right[:20].repeat(2))
    image, targets = first.train_dataset[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert set(targets) == {"left", "right"} and targets["left"].dtype == torch.int64
    mnist = np.frombuffer((mnist_root / "MNIST/raw/train-labels-idx1-ubyte").read_bytes()[8:], dtype=np.uint8)
    assert first.train_dataset.left.tolist() == mnist.tolist()
    partner = torch.randint(40, (40,), generator=torch.Generator().manual_seed(3))
    assert first.train_dataset.right.tolist() == mnist[partner.numpy()].tolist()


def test_multimnist_missing_or_truncated_files(mnist_root: Path, tmp_path: Path) -> None:
    (mnist_root / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)expected layout.*MNIST/raw/t10k-labels-idx1-ubyte"):
        MultiMNISTData(mnist_root)
    write_idx(mnist_root / "MNIST/raw/t10k-labels-idx1-ubyte", np.zeros(20))
    path = mnist_root / "MNIST/raw/train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"MNIST/raw/train-\*-ubyte is not a valid.*truncated"):
        MultiMNISTData(mnist_root)


# ----------------------------------------------------------------------------- CelebA
def test_celeba_reads_torchvision_layout_as_multilabel_and_per_attribute_tasks(celeba_root: Path) -> None:
    data = CelebAData(celeba_root, batch_size=2, image_size=16)
    assert (len(data.train_dataset), len(data.val_dataset)) == (4, 2)
    assert len(data.task_names) == 41 and "smiling" in data.task_names
    assert len(CelebAData(celeba_root, batch_size=2, eval_split="test").val_dataset) == 1
    image, targets = data.val_dataset[1]
    assert image.shape == (3, 16, 16) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    row = (celeba_root / "celeba/list_attr_celeba.txt").read_text().splitlines()[2 + 5].split()
    assert row[0] == "000006.jpg"
    assert targets["attributes"].tolist() == [int(v == "1") for v in row[1:]]
    assert targets["smiling"].tolist() == [int(row[-1] == "1")] and targets["smiling"].shape == (1,)


def test_celeba_bad_files_name_the_file(celeba_root: Path) -> None:
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt: MD5 differs"):
        CelebAData(celeba_root, check_md5=True)
    path = celeba_root / "celeba/list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace("-1", "0", 1) if "-1" in lines[4] else lines[4].replace(" 1", " 2", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt:5: expected"):
        CelebAData(celeba_root)
    with pytest.raises(FileNotFoundError, match=r"(?s)celeba not found.*list_eval_partition\.txt"):
        CelebAData(celeba_root / "elsewhere")


# ----------------------------------------------------------------------------- Office
def test_office_batches_cycle_small_domains_and_evaluate_each_image_once(office_root: Path) -> None:
    data = OfficeData(office_root, batch_size=2, image_size=12, eval_batch_size=2)
    assert data.task_names == ("amazon", "dslr", "webcam") and data.input_shape == (3, 12, 12)
    train = list(data.train_loader(torch.Generator().manual_seed(0)))
    assert len(train) == 5 // 2  # the largest domain's full batches
    images, labels = train[0]
    assert set(images) == set(labels) == set(OFFICE_SIZES)
    assert images["amazon"].shape == (2, 3, 12, 12) and labels["dslr"].dtype == torch.int64
    val = list(data.val_loader())
    assert len(val) == 1  # min(ceil(3 / 2), smallest domain's size 1)
    for domain, (_, size) in OFFICE_SIZES.items():
        assert sum(len(labels[domain]) for _, labels in val) == size
    data.check_tasks(["amazon", "webcam"])
    images, _ = next(iter(data.train_loader()))
    assert set(images) == {"amazon", "webcam"}
    with pytest.raises(ConfigError, match="provides"):
        data.check_tasks(["art"])


def test_cycling_and_even_split_samplers() -> None:
    sampler = CyclingBatches({"a": 10, "b": 3}, batch_size=3, generator=torch.Generator().manual_seed(0))
    steps = list(sampler)
    assert len(steps) == len(sampler) == 3
    assert all(sorted(set(step["a"])) == sorted(step["a"]) for step in steps)
    assert sorted(i for step in steps for i in step["a"]) == sorted(set(i for step in steps for i in step["a"]))
    assert all(sorted(step["b"]) == [0, 1, 2] for step in steps)  # the small domain reshuffles every step
    even = list(EvenSplitBatches({"a": 10, "b": 4}, batch_size=3))
    assert len(even) == 4
    assert sorted(i for step in even for i in step["a"]) == list(range(10))
    assert sorted(i for step in even for i in step["b"]) == list(range(4))


def test_office_bad_split_lists(office_root: Path) -> None:
    (office_root / "dslr_val.txt").write_text("\n")
    with pytest.raises(DataError, match=r"dslr_val\.txt: the split list is empty"):
        OfficeData(office_root, image_size=12)
    (office_root / "dslr_val.txt").write_text("dslr/images/class_0/frame_val_0000.jpg 31\n")
    with pytest.raises(DataError, match=r"dslr_val\.txt:1: label 31 outside the class range 0\.\.30"):
        OfficeData(office_root, image_size=12)
    (office_root / "dslr_val.txt").write_text("dslr/images/nope.jpg 0\n")
    with pytest.raises(FileNotFoundError, match=r"dslr/images/nope\.jpg"):
        OfficeData(office_root, image_size=12)
    with pytest.raises(FileNotFoundError, match=r"(?s)expected layout.*amazon, dslr, webcam"):
        OfficeData(office_root / "missing")


# ----------------------------------------------------------------------------- encoders
def test_segnet_returns_to_input_resolution_through_its_pooling_indices() -> None:
    encoder = SegNet(in_channels=3, widths=[4, 8, 16])
    assert encoder.stage_channels == [4, 8, 16, 8, 4, 4] and len(encoder.stages) == 6
    x = torch.randn(2, 3, 18, 30)  # 18 → 9 → 4: unpooling restores the odd size
    assert encoder(x).shape == (2, 4, 18, 30)
    assert encoder.feature_size((3, 18, 30)) == (18, 30)
    five = SegNet(widths=[2, 3, 4, 5, 6])
    assert five.stage_channels == [2, 3, 4, 5, 6, 5, 4, 3, 2, 2]
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in stage.modules()) for stage in five.stages]
    assert convs == [2, 2, 3, 3, 3, 3, 3, 3, 2, 2]  # mtan's SegNet
    with pytest.raises(RuntimeError, match="in order"):
        encoder.stages[-1](torch.randn(1, 8, 5, 5))


def test_lenet_gives_a_50_unit_representation_for_28x28_digits() -> None:
    encoder = LeNet(in_channels=1)
    assert encoder(torch.randn(3, 1, 28, 28)).shape == (3, 50, 1, 1)
    with pytest.raises(ConfigError, match="widths"):
        LeNet(widths=[10, 20])


# ----------------------------------------------------------------------------- end to end
SHORT = ["trainer.epochs=1", "trainer.max_steps=2", "trainer.progress=false", "data.num_workers=0"]


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("nyuv2_segnet", ["encoder.widths=[4,8]", "data.image_size=[16,24]", "trainer.image_every=1"]),
        ("nyuv2_mtan", ["encoder.widths=[4,8]", "data.image_size=[16,24]"]),
        ("multimnist_lenet", ["data.batch_size=8"]),
        ("office31", ["data.image_size=16", "data.batch_size=2"]),
    ],
)
def test_presets_train_a_few_steps_on_fixtures(
    preset: str, overrides: list[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = request.getfixturevalue(
        {"multimnist_lenet": "mnist_root", "office31": "office_root"}.get(preset, "nyuv2_root")
    )
    cfg = compose_config([f"experiment={preset}", f"data.root={root}", *SHORT, *overrides])
    if preset == "office31":  # the preset's ImageNet ResNet-18 is too slow here; keep its data, tasks and heads
        with open_dict(cfg):
            cfg.encoder = compose_config(["encoder=small_cnn", "encoder.widths=[8,16]"]).encoder
    record = run(cfg, tmp_path / "run")
    assert record["step"] == 2
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(saved["tasks"]) == set(cfg.tasks)
    for metrics in saved["tasks"].values():
        assert metrics and all(np.isfinite(value) for value in metrics.values())
