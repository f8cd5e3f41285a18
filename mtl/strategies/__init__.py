"""Sharing strategies: how tasks share (or do not share) the encoder. One file per strategy."""

from mtl.strategies.base import SharingStrategy, encoder_stages, run_stages
from mtl.strategies.cross_stitch import CrossStitch
from mtl.strategies.hard import HardSharing
from mtl.strategies.independent import Independent
from mtl.strategies.mmoe import MMoE
from mtl.strategies.mtan import MTAN
from mtl.strategies.ple import CGC, PLE

__all__ = [
    "CGC",
    "MTAN",
    "PLE",
    "CrossStitch",
    "HardSharing",
    "Independent",
    "MMoE",
    "SharingStrategy",
    "encoder_stages",
    "run_stages",
]
