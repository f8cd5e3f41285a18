"""Tasks: a name, a loss, metrics and the kind of head output they consume (built from config)."""

from mtl.tasks.base import Task
from mtl.tasks.classification import ClassificationTask, MultilabelTask, RegressionTask
from mtl.tasks.dense import DepthTask, NormalTask, SegmentationTask
from mtl.tasks.sequence import SequenceTask, greedy_decode

__all__ = [
    "ClassificationTask",
    "DepthTask",
    "MultilabelTask",
    "NormalTask",
    "RegressionTask",
    "SegmentationTask",
    "SequenceTask",
    "Task",
    "greedy_decode",
]
