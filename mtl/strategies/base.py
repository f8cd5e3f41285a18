"""The sharing-strategy contract: how an encoder and per-task heads are wired into one multi-task model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.models.encoders import feature_shape
from mtl.models.heads import build_head
from mtl.tasks import Task

EncoderFactory = Callable[[], nn.Module]


class SharingStrategy(nn.Module):
    """Base class of every sharing strategy (hard, independent, cross-stitch, MMoE, ...).

    A strategy is built from a zero-argument ``encoder`` factory (call it once per encoder copy you need), the
    ``tasks`` (name → :class:`~mtl.tasks.Task`, which say what output their head must produce) and the
    ``input_shape`` (C, H, W) of one image. A subclass's ``__init__(self, encoder, tasks, input_shape, **options)``
    calls ``super().__init__(tasks, input_shape)`` first, then builds its modules. It must provide:

    - ``forward(x) -> {task: prediction}`` for every task;
    - ``task_parameters(name)``: parameters only task ``name``'s loss trains (its head, its gates, ...);
    - ``shared_parameters()``: parameters that more than one task's loss trains (gradient methods aggregate
      the per-task gradients of exactly these). The default returns every parameter that no task owns, so
      shared and task parameters cover every parameter exactly once.

    Strategies with one shared representation also implement ``encode(x) -> z`` and ``decode(z) -> preds`` so
    that gradient methods can work on ``z`` (``weighting.mode=rep``); ``forward`` then defaults to
    ``decode(encode(x))``. ``diagnostics()`` may return scalars to log (e.g. mean gate weights).

    Helpers: ``build_heads(encoder, tasks)`` sizes one head per task from an encoder's feature map;
    ``apply_heads(features)`` runs them (``self.heads``); :func:`encoder_stages` checks that an encoder
    exposes ``stages``. A complete worked subclass is docs/examples/my_strategy.py (see docs/strategies.md)::

        class MyStrategy(SharingStrategy):
            def __init__(self, encoder, tasks, input_shape):
                super().__init__(tasks, input_shape)
                self.encoder = encoder()
                self.heads = self.build_heads(self.encoder, tasks)

            def forward(self, x):
                features = self.encoder(x)
                return self.apply_heads({name: features for name in self.task_names})

            def task_parameters(self, name):
                return list(self.heads[name].parameters())
    """

    def __init__(self, tasks: Mapping[str, Task], input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("a sharing strategy needs at least one task (got an empty task list)")
        self.task_names: list[str] = list(tasks)
        self.input_shape = tuple(input_shape)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.decode(self.encode(x))

    def encode(self, x: Tensor) -> Tensor:
        raise ConfigError(
            f"strategy {type(self).__name__} has no shared representation, so weighting.mode=rep cannot be "
            "used with it; use weighting.mode=param"
        )

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        raise ConfigError(f"strategy {type(self).__name__} does not implement decode(z)")

    @property
    def supports_rep_mode(self) -> bool:
        """True when the strategy splits into ``encode``/``decode`` around one shared representation."""
        return type(self).encode is not SharingStrategy.encode

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every parameter that no task owns (override only to list them in another order)."""
        owned = {id(p) for name in self.task_names for p in self.task_parameters(name)}
        return [p for p in self.parameters() if id(p) not in owned]

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, float]:
        """Scalars describing the last forward pass (e.g. ``gate/<task>/expert0``) for the logger; none here."""
        return {}

    def apply_heads(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each task's head (``self.heads``, from :meth:`build_heads`) on that task's feature map."""
        return {name: head(features[name]) for name, head in self.heads.items()}

    def build_heads(self, encoder: nn.Module, tasks: Mapping[str, Task]) -> nn.ModuleDict:
        """One head per task, sized from the feature map ``encoder`` produces for ``input_shape``."""
        channels, height, width = feature_shape(encoder, self.input_shape)
        return nn.ModuleDict(
            {
                name: build_head(
                    task.head,
                    output=task.output,
                    in_channels=channels,
                    out_channels=task.out_channels,
                    feature_size=(height, width),
                    output_size=self.input_shape[1:],
                    task=name,
                )
                for name, task in tasks.items()
            }
        )

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}"


Images = Tensor | Mapping[str, Tensor]


def encoder_stages(encoder: nn.Module, strategy: str) -> tuple[nn.ModuleList, list[int]]:
    """The ``stages`` and ``stage_channels`` of an encoder (an :class:`mtl.models.Encoder`), for strategies that
    put their own modules between stages; a clear ConfigError for an encoder without them.

    Such strategies rely on the Encoder contract that ``encoder(x)`` is the stages run in order.
    """
    stages = getattr(encoder, "stages", None)
    channels = getattr(encoder, "stage_channels", None)
    if not isinstance(stages, nn.ModuleList) or len(stages) == 0 or channels is None or len(channels) != len(stages):
        raise ConfigError(
            f"strategy {strategy} puts its own modules between encoder stages, so it needs an encoder that exposes "
            f"`stages` (nn.ModuleList) and `stage_channels` (one per stage), as mtl.models.Encoder subclasses do "
            f"(encoder=small_cnn, resnet18, resnet34, resnet50); {type(encoder).__name__} does not. Strategies "
            "that take any encoder: hard, independent, mmoe, cgc"
        )
    return stages, [int(c) for c in channels]


def run_stages(stages: Sequence[nn.Module], x: Tensor) -> list[Tensor]:
    """Run ``stages`` in order on ``x`` and keep every stage's output (MTAN attends to each of them)."""
    outputs = []
    for stage in stages:
        x = stage(x)
        outputs.append(x)
    return outputs


def predict(strategy: SharingStrategy, images: Images) -> dict[str, Tensor]:
    """Predictions for a batch: one shared input (a tensor), or one input per task (a dict: multi-input data
    sets such as Office, where task ``t``'s prediction comes from ``strategy(images[t])[t]``)."""
    if isinstance(images, Tensor):
        return strategy(images)
    return {name: strategy(task_images)[name] for name, task_images in images.items()}
