"""Office-31 (Saenko et al. 2010) and Office-Home (Venkateswara et al. 2017) with LibMTL's split lists: one
classification task per domain, each domain its own input (multi-input MTL).

Split lists are LibMTL's ``examples/office/data_txt/<dataset>/<Domain>_{train,val,test}.txt`` (60/20/20), one
``<path relative to the data root> <label>`` per line; images are resized to 224×224 and normalised with the
ImageNet statistics, as LibMTL's ``office_Dataset`` does.

A batch is ``({domain: images B_d×3×S×S}, {domain: labels B_d})``.

- Training: an epoch has as many steps as the largest domain has full batches; every domain draws its batch
  from its own shuffled order and starts a fresh shuffle when it runs out (smaller domains cycle), as LibMTL's
  multi-input trainer does. Incomplete batches are dropped.
- Evaluation (``eval_split``: val, or test for final numbers): every image of every domain exactly once; each
  domain's split is cut into the same number of batches so every batch holds all domains (smaller domains get
  smaller batches).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from mtl.data._files import check_classes, load_rgb, read_split_list, require_dir
from mtl.data.base import DataModule
from mtl.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OFFICE_DATASETS: dict[str, tuple[dict[str, str], int]] = {
    "office-31": ({"amazon": "amazon", "dslr": "dslr", "webcam": "webcam"}, 31),
    "office-home": ({"art": "Art", "clipart": "Clipart", "product": "Product", "real_world": "Real_World"}, 65),
}
"""Per data set: {task name: domain prefix of the split-list files}, and the number of classes."""

LAYOUT = """  {split_dir}/<Domain>_{{train,val,test}}.txt   one '<relative/path.jpg> <label>' per line (LibMTL's lists)
  {root}/<relative/path.jpg>                   the images the lists name, e.g. amazon/images/back_pack/frame_0001.jpg
  domains of {dataset}: {domains}
  (see docs/datasets.md)"""

Indices = dict[str, list[int]]


class ImageListDataset(Dataset):
    """The images of one domain's split list: ``(image float 3×S×S, ImageNet-normalised; label int64)``."""

    def __init__(self, root: Path, entries: list[tuple[str, int]], image_size: int) -> None:
        self.root = root
        self.entries = entries
        self.image_size = image_size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        relative, label = self.entries[index]
        image = load_rgb(self.root / relative, (self.image_size, self.image_size), "an Office split list")
        return (image - self.mean) / self.std, torch.tensor(label)


class MultiDomainDataset(Dataset):
    """Indexed by ``{domain: [indices]}``: returns the stacked images and labels of every listed domain."""

    def __init__(self, domains: Mapping[str, ImageListDataset]) -> None:
        self.domains = dict(domains)

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.domains.values())

    def __getitem__(self, indices: Indices) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        images, labels = {}, {}
        for name, chosen in indices.items():
            samples = [self.domains[name][i] for i in chosen]
            images[name] = torch.stack([image for image, _ in samples])
            labels[name] = torch.stack([label for _, label in samples])
        return images, labels


class CyclingBatches(Sampler[Indices]):
    """Training order: max over domains of full batches per epoch; smaller domains reshuffle and cycle."""

    def __init__(self, sizes: Mapping[str, int], batch_size: int, generator: torch.Generator | None = None) -> None:
        self.sizes = dict(sizes)
        self.batch = {name: min(batch_size, size) for name, size in self.sizes.items()}
        self.steps = max(size // self.batch[name] for name, size in self.sizes.items())
        self.generator = generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Indices]:
        generator = self.generator
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_()))
        orders = {name: torch.randperm(size, generator=generator).tolist() for name, size in self.sizes.items()}
        positions = dict.fromkeys(self.sizes, 0)
        for _ in range(self.steps):
            step = {}
            for name, size in self.sizes.items():
                if positions[name] + self.batch[name] > size:
                    orders[name] = torch.randperm(size, generator=generator).tolist()
                    positions[name] = 0
                step[name] = orders[name][positions[name] : positions[name] + self.batch[name]]
                positions[name] += self.batch[name]
            yield step


class EvenSplitBatches(Sampler[Indices]):
    """Evaluation order: every index of every domain once, each domain cut into the same number of batches."""

    def __init__(self, sizes: Mapping[str, int], batch_size: int) -> None:
        self.sizes = dict(sizes)
        self.steps = min(math.ceil(max(self.sizes.values()) / batch_size), min(self.sizes.values()))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Indices]:
        chunks = {name: torch.arange(size).tensor_split(self.steps) for name, size in self.sizes.items()}
        for step in range(self.steps):
            yield {name: parts[step].tolist() for name, parts in chunks.items()}


class OfficeData(DataModule):
    """Office-31 / Office-Home: tasks are the domains; ``check_tasks`` narrows batches to the selected ones."""

    def __init__(
        self,
        root: str | Path,
        dataset: str = "office-31",
        split_dir: str | Path | None = None,
        image_size: int = 224,
        eval_split: str = "val",
        batch_size: int = 64,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        classes: Mapping | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, eval_batch_size)
        if dataset not in OFFICE_DATASETS:
            raise ConfigError(f"data.dataset must be one of {list(OFFICE_DATASETS)}, got {dataset!r}")
        if eval_split not in ("val", "test"):
            raise ConfigError(f"data.eval_split must be 'val' or 'test', got {eval_split!r}")
        prefixes, num_classes = OFFICE_DATASETS[dataset]
        self.classes = {"object": num_classes}
        check_classes(dataset, classes, self.classes)
        root = Path(root).expanduser()
        lists = Path(split_dir).expanduser() if split_dir is not None else root
        layout = LAYOUT.format(split_dir=lists, root=root, dataset=dataset, domains=", ".join(prefixes.values()))
        require_dir(root, dataset, layout)
        require_dir(lists, dataset, layout)
        self.task_names = tuple(prefixes)
        self.active = list(prefixes)

        def split(name: str) -> dict[str, ImageListDataset]:
            datasets = {}
            for task, prefix in prefixes.items():
                entries = read_split_list(lists / f"{prefix}_{name}.txt", dataset, layout, num_classes)
                missing = [relative for relative, _ in entries if not (root / relative).is_file()]
                if missing:
                    raise FileNotFoundError(
                        f"{dataset}: {len(missing)} image(s) listed in {lists / f'{prefix}_{name}.txt'} are missing "
                        f"under {root}, e.g. {root / missing[0]}; expected layout:\n{layout}"
                    )
                datasets[task] = ImageListDataset(root, entries, image_size)
            return datasets

        self.train_domains = split("train")
        self.val_domains = split(eval_split)
        self.image_size = image_size

    @property
    def train_dataset(self) -> MultiDomainDataset:
        return MultiDomainDataset({name: self.train_domains[name] for name in self.active})

    @property
    def val_dataset(self) -> MultiDomainDataset:
        return MultiDomainDataset({name: self.val_domains[name] for name in self.active})

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """C, H, W of one image of any domain."""
        return (3, self.image_size, self.image_size)

    def check_tasks(self, names: Mapping[str, object] | list[str]) -> None:
        """Fail on unknown domains; batches then hold only the selected domains (e.g. ``tasks=[amazon,dslr]``)."""
        super().check_tasks(names)
        self.active = list(names)

    def train_loader(self, generator: torch.Generator | None = None) -> DataLoader:
        sizes = {name: len(self.train_domains[name]) for name in self.active}
        sampler = CyclingBatches(sizes, self.batch_size, generator)
        return self._loader(self.train_dataset, sampler)

    def val_loader(self) -> DataLoader:
        sizes = {name: len(self.val_domains[name]) for name in self.active}
        return self._loader(self.val_dataset, EvenSplitBatches(sizes, self.eval_batch_size))

    def _loader(self, dataset: MultiDomainDataset, sampler: Sampler[Indices]) -> DataLoader:
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
