"""The design notes' claims as reruns: positions on the order task, and multi-head vs single-head attention.

Each variant trains ``recipes/text/who_did_it.yaml`` with overrides (fresh processes, one at a time)
and records test accuracy and wall time in ``docs/experiments.json``:

    python benchmarks/experiments.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import CLI, ROOT, last_metrics, run

RESULTS = ROOT / "docs" / "experiments.json"
RECIPE = "recipes/text/who_did_it.yaml"
VARIANTS = {
    "positions": {
        position: [f"--model.transformer.position={position}"] for position in ("none", "sinusoidal", "learned", "rope")
    },
    "heads": {  # equal width (dim 64) and equal parameter count: heads only split the same projections
        f"{heads} head{'s' if heads > 1 else ''}": [f"--model.transformer.num_heads={heads}"] for heads in (1, 4)
    },
}
SEEDS = {"positions": [0], "heads": [0, 1, 2]}


def main() -> None:
    save_dir = ROOT / "runs" / "experiments"
    # Merge: other scripts (benchmarks/long_range.py) keep their own keys in the same file.
    results: dict[str, dict[str, object]] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for experiment, variants in VARIANTS.items():
        results[experiment] = {}
        for label, overrides in variants.items():
            accuracies, seconds = [], []
            for seed in SEEDS[experiment]:
                name = f"{experiment}_{label.replace(' ', '_')}_{seed}"
                shutil.rmtree(save_dir / name, ignore_errors=True)
                common = [f"--trainer.logger.init_args.save_dir={save_dir}", f"--trainer.logger.init_args.name={name}"]
                config = ["--config", RECIPE, "--trainer.enable_progress_bar=false", f"--seed_everything={seed}"]
                seconds.append(run([CLI, "fit", *config, *overrides, *common]))
                run([CLI, "test", *config, *overrides, *common, "--ckpt_path=last"])
                accuracies.append(last_metrics(save_dir / name / "test" / "metrics.csv")["test/acc"])
            results[experiment][label] = {
                "test_acc": accuracies,
                "mean": statistics.mean(accuracies),
                "std": statistics.pstdev(accuracies),
                "fit_seconds": [round(value, 1) for value in seconds],
                "command": f"modal-tf fit --config {RECIPE} {' '.join(overrides)} --seed_everything=SEED",
            }
            RESULTS.write_text(json.dumps(results, indent=1))
            print(experiment, label, results[experiment][label], flush=True)


if __name__ == "__main__":
    main()
