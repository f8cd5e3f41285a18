"""Published single-task (STL) reference metrics, in this package's metric names and units.

Use one by name as a Δm% baseline: ``mtl-train trainer.baseline=nyuv2_stl`` or
``mtl-compare DIR --baseline cityscapes_stl``. Each ``<name>.json`` holds ``{"source", "units", "tasks"}``.
"""
