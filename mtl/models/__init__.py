"""Encoders (shared trunks made of stages) and task heads."""

from mtl.models.encoders import Encoder, ResNetEncoder, SmallCNN, conv_bn_relu
from mtl.models.heads import HEAD_OUTPUTS, HEADS, DenseHead, LSTMHead, PooledHead, build_head
from mtl.models.lenet import LeNet
from mtl.models.segnet import SegNet

__all__ = [
    "HEADS",
    "HEAD_OUTPUTS",
    "DenseHead",
    "Encoder",
    "LSTMHead",
    "LeNet",
    "PooledHead",
    "ResNetEncoder",
    "SegNet",
    "SmallCNN",
    "build_head",
    "conv_bn_relu",
]
