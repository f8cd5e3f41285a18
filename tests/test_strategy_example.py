"""The worked subclass example of docs/strategies.md (docs/examples/my_strategy.py), run as the docs say."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtl.errors import ConfigError
from mtl.train import build
from tests.conftest import REPO, TINY, compose_config

EXAMPLES = REPO / "docs" / "examples"
TARGET = "strategy._target_=my_strategy.MyStrategy"


@pytest.fixture
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_the_documented_command_trains_the_example_strategy(tmp_path: Path, examples_on_path: None) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "mtl.train", TARGET, *TINY, f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["step"] == 2
    assert set(metrics["tasks"]) == {"seg", "depth", "normal", "count", "sequence"}
    assert all(isinstance(v, float) for task in metrics["tasks"].values() for v in task.values())
    logged = int(re.search(r"(\d+) parameters", (tmp_path / "train.log").read_text()).group(1))
    example = build(compose_config([*TINY, TARGET])).strategy
    hard = build(compose_config(TINY)).strategy
    assert type(example).__name__ == "MyStrategy"
    assert logged == sum(p.numel() for p in example.parameters()) != sum(p.numel() for p in hard.parameters())


def test_the_example_splits_at_its_trunk_and_owns_branches_per_task(examples_on_path: None) -> None:
    strategy = build(compose_config([*TINY, TARGET])).strategy.eval()
    assert strategy.supports_rep_mode
    x = torch.randn(2, *strategy.input_shape)
    direct, split = strategy(x), strategy.decode(strategy.encode(x))
    for task in direct:
        torch.testing.assert_close(direct[task], split[task])
    assert {id(p) for p in strategy.shared_parameters()} == {id(p) for p in strategy.trunk.parameters()}


def test_a_user_yaml_on_the_search_path_sets_the_example_option(examples_on_path: None) -> None:
    search = f"hydra.searchpath=[file://{EXAMPLES / 'conf'}]"
    cfg = compose_config([*TINY, search, "strategy=my_strategy", "strategy.private_stages=2"])
    strategy = build(cfg).strategy
    assert len(strategy.trunk) == 0 and strategy.shared_parameters() == []
    with pytest.raises(ConfigError, match=r"private_stages must be an integer in \[1, 2\]"):
        build(compose_config([*TINY, search, "strategy=my_strategy", "strategy.private_stages=3"]))


def test_a_plus_override_passes_an_option_to_the_example(examples_on_path: None) -> None:
    strategy = build(compose_config([*TINY, TARGET, "+strategy.private_stages=2"])).strategy
    assert len(strategy.trunk) == 0


def test_the_class_shown_in_the_docs_is_the_class_in_the_example_file() -> None:
    page = (REPO / "docs" / "strategies.md").read_text()
    shown = re.search(r"```python\n(class MyStrategy.*?)```", page, re.DOTALL).group(1)
    assert shown in (EXAMPLES / "my_strategy.py").read_text()
