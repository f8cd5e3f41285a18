"""Encoders (shared trunks made of stages) and task heads."""

from mtl.models.encoders import Encoder, ResNetEncoder, SmallCNN, conv_bn_relu
from mtl.models.heads import HEAD_OUTPUTS, HEADS, DenseHead, LSTMHead, PooledHead, build_head

__all__ = [
    "HEADS",
    "HEAD_OUTPUTS",
    "DenseHead",
    "Encoder",
    "LSTMHead",
    "PooledHead",
    "ResNetEncoder",
    "SmallCNN",
    "build_head",
    "conv_bn_relu",
]
