"""Train and test bundled recipes, and record the metrics and wall times that README's recipe table quotes.

Each recipe runs ``modal-tf fit`` then ``modal-tf test --ckpt_path=last`` in fresh processes, one at
a time (nothing else should run on the machine), into ``runs/measure/<recipe>/``. Robot recipes
also run ``modal-tf rollout`` on held-out simulator seeds. Results go to ``docs/recipe_results.json``.

    python benchmarks/recipes.py text/who_did_it vision/encoder_classify_digits ...
    python benchmarks/recipes.py --all
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "recipe_results.json"
CLI = str(Path(sys.executable).with_name("modal-tf"))


def embedded_recipes() -> list[Path]:
    """Every recipe YAML that runs offline on embedded data (the real-data ones need a download)."""
    real_data = ("cifar10", "speech_commands")
    return [path for path in sorted((ROOT / "recipes").glob("*/*.yaml")) if not any(r in path.name for r in real_data)]


def short_fit(config: Path | str, steps: int, save_dir: Path | str, *options: str) -> list[str]:
    """The command of a ``modal-tf fit`` of ``config`` for ``steps`` steps, without validation or progress bar,
    logging to ``save_dir/run/``; ``options`` are further CLI arguments."""
    return [
        CLI, "fit", f"--config={config}", f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={save_dir}",
        "--trainer.logger.init_args.name=run", *options,
    ]  # fmt: skip


def run(command: list[str]) -> float:
    """Run a command, echoing it; return its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - started


def last_metrics(path: Path) -> dict[str, float]:
    """The last non-empty value of every column of a Lightning CSV log."""
    values: dict[str, float] = {}
    with path.open() as stream:
        for row in csv.DictReader(stream):
            values.update({key: float(value) for key, value in row.items() if value not in ("", None)})
    return values


def merge_entry(path: Path, key: str, entry: dict[str, object]) -> None:
    """Set ``key`` to ``entry`` in the JSON file ``path``, atomically.

    The file is re-read just before writing and only ``key`` is replaced: another measurement running at the
    same time must not have its fresh entries overwritten by the copy this process read at start.
    """
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=1, sort_keys=True))
    temporary.replace(path)  # atomic: a reader never sees half a file


def measure(recipe: str, save_dir: Path) -> dict[str, object]:
    """Fit, test (and roll out, for robot recipes) one recipe."""
    name = recipe.replace("/", "_")
    shutil.rmtree(save_dir / name, ignore_errors=True)
    common = [f"--trainer.logger.init_args.save_dir={save_dir}", f"--trainer.logger.init_args.name={name}"]
    config = ["--config", f"recipes/{recipe}.yaml", "--trainer.enable_progress_bar=false"]
    fit_seconds = run([CLI, "fit", *config, *common])
    test_seconds = run([CLI, "test", *config, *common, "--ckpt_path=last"])
    result: dict[str, object] = {
        "recipe": recipe,
        "fit_seconds": round(fit_seconds, 1),
        "test_seconds": round(test_seconds, 1),
        "test": last_metrics(save_dir / name / "test" / "metrics.csv"),
        "val": {k: v for k, v in last_metrics(save_dir / name / "metrics.csv").items() if k.startswith("val/")},
        "command": f"modal-tf fit --config recipes/{recipe}.yaml && "
        f"modal-tf test --config recipes/{recipe}.yaml --ckpt_path=last",
    }
    if recipe.startswith("robot/"):
        out = save_dir / name / "rollout"
        run(
            [
                CLI,
                "rollout",
                f"--ckpt={save_dir / name / 'checkpoints' / 'last.ckpt'}",
                "--episodes=100",
                "--execute=1",  # re-plan after every action (receding horizon)
                f"--out={out}",
            ]
        )
        result["rollout"] = json.loads((out / "rollout.json").read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", help="recipe names like text/who_did_it")
    parser.add_argument("--all", action="store_true", help="every embedded-data recipe")
    parser.add_argument("--save-dir", default="runs/measure")
    options = parser.parse_args()
    recipes = options.recipes
    if options.all:
        recipes = [str(path.relative_to(ROOT / "recipes").with_suffix("")) for path in embedded_recipes()]
    for recipe in recipes:
        entry = measure(recipe, Path(options.save_dir))
        threads = os.environ.get("OMP_NUM_THREADS", "default")
        entry["machine"] = f"{platform.machine()} {os.cpu_count()} cores, torch threads {threads}"
        merge_entry(RESULTS, recipe, entry)
        print(json.dumps(entry, indent=1), flush=True)


if __name__ == "__main__":
    main()
