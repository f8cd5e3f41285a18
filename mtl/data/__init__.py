"""Data modules: Scenes (generated in memory) and the benchmarks read from disk (see docs/datasets.md)."""

from mtl.data.base import DataModule
from mtl.data.celeba import CelebAData
from mtl.data.cityscapes import CityScapesData
from mtl.data.multimnist import MultiMNISTData
from mtl.data.nyuv2 import NYUv2Data
from mtl.data.office import OfficeData
from mtl.data.scenes import ScenesData

__all__ = ["CelebAData", "CityScapesData", "DataModule", "MultiMNISTData", "NYUv2Data", "OfficeData", "ScenesData"]
