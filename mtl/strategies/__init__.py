"""Sharing strategies: how tasks share (or do not share) the encoder. One file per strategy."""

from mtl.strategies.base import SharingStrategy
from mtl.strategies.hard import HardSharing
from mtl.strategies.independent import Independent

__all__ = ["HardSharing", "Independent", "SharingStrategy"]
