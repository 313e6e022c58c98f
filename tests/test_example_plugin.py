"""The third-party plugin example installs like a user's and works by name, through real distribution metadata.

``examples/sensor_plugin`` is copied to a temporary folder (so its build leaves nothing in the
checkout) and installed with pip, offline (``--no-index``, ``--no-build-isolation``: setuptools
comes from this venv), into a ``--target`` folder: the venv's site-packages are never touched.
Subprocesses that see the plugin only through ``PYTHONPATH`` then check what a user would:
``modal-tf tokenizers`` lists ``sensor_frames`` as a plugin, the example recipe, naming the
tokenizer and the DataModule, trains a few steps through the real CLI and writes ``last.ckpt``,
and the plugin's own test suite (the conformance kit) passes against the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "examples" / "sensor_plugin"
RECIPE = EXAMPLE / "recipe.yaml"
CONSOLE_SCRIPT = Path(sys.executable).with_name("modal-tf")
TIMEOUT_S = 300  # a hung subprocess fails the test instead of the whole suite


class Installed:
    """Where the example was copied and installed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.source = root / "sensor_plugin"
        self.site = root / "site"

    def env(self) -> dict[str, str]:
        """The environment of a process that sees the plugin through ``PYTHONPATH`` only."""
        return {
            **os.environ,
            "PYTHONPATH": str(self.site),
            "OMP_NUM_THREADS": "1",  # one thread per process: the suite shares 2 cores
            "COLUMNS": "200",  # rich tables otherwise wrap names and sources across lines
            "MODAL_TF_TRACEBACK": "1",  # a CLI failure shows its traceback in the assertion message
        }

    def run(self, *command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in ``cwd`` with this environment; output captured as text."""
        return subprocess.run(
            command, cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The example installed into a fresh ``--target`` folder, offline."""
    target = Installed(tmp_path_factory.mktemp("plugin"))
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", "runs")
    shutil.copytree(EXAMPLE, target.source, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    options = ["--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(target.site)]
    result = subprocess.run(
        [*pip, *options, str(target.source)], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"pip install of the example failed:\n{_explain(result)}"
    return target


def test_install_writes_the_entry_point_into_distribution_metadata(installed: Installed) -> None:
    infos = list(installed.site.glob("modal_tf_sensors-*.dist-info"))
    assert len(infos) == 1, f"expected one dist-info, found {infos}"
    entry_points = (infos[0] / "entry_points.txt").read_text()
    assert "[modal_tf.tokenizers]" in entry_points
    assert "sensor_frames = modal_tf_sensors.tokenizer:SensorFrameTokenizer" in entry_points
    assert (installed.site / "modal_tf_sensors" / "py.typed").is_file()


def test_the_cli_lists_the_plugin_by_name(installed: Installed) -> None:
    result = installed.run(str(CONSOLE_SCRIPT), "tokenizers", cwd=installed.root)
    assert result.returncode == 0, _explain(result)
    rows = [line for line in result.stdout.splitlines() if " sensor_frames " in line]
    assert len(rows) == 1, f"sensor_frames not listed once:\n{result.stdout}"
    assert "plugin (modal_tf_sensors.tokenizer)" in rows[0]
    assert "failed to load" not in result.stdout + result.stderr


def test_the_example_recipe_trains_through_the_cli(installed: Installed) -> None:
    runs = installed.root / "runs"  # fresh: the CLI refuses to overwrite a run folder
    result = installed.run(
        str(CONSOLE_SCRIPT),
        "fit",
        "--config",
        str(RECIPE),
        "--trainer.max_steps=3",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={runs}",
        cwd=installed.root,
    )
    assert result.returncode == 0, _explain(result)
    checkpoint = runs / "sensor_activity" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file(), f"no last.ckpt; run folder holds {sorted(map(str, runs.rglob('*')))}"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["modal_tf"]["task"]
    sensor = state["inputs"]["sensor"]  # the checkpoint names the plugin, so it alone can rebuild it
    assert sensor["name"] == "sensor_frames" and sensor["config"]["frame"] == 8
    assert len(sensor["fitted"]["mean"]) == 6  # fitted on the training split before training
    assert state["class_names"] == ["standing", "walking", "running", "jumping"]


def test_the_plugins_own_conformance_suite_passes(installed: Installed) -> None:
    result = installed.run(sys.executable, "-m", "pytest", str(installed.source / "tests"), cwd=installed.source)
    assert result.returncode == 0, _explain(result)
    assert "passed" in result.stdout and "failed" not in result.stdout
