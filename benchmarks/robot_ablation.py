"""Action-tokenizer ablation of the VLA recipe: same model, data and budget, only the action tokens change.

Each variant runs ``modal-tf fit`` on ``recipes/robot/encoder_decoder_vla.yaml`` with one
``--data.init_args.action_tokenizer`` override, then ``modal-tf rollout`` on 100 held-out simulator
seeds (re-planning after every action, as ``benchmarks/recipes.py`` does), one process at a time.
Results, with the exact commands, go to ``docs/robot_ablation.json``.

    python benchmarks/robot_ablation.py                 # every variant
    python benchmarks/robot_ablation.py action_mulaw    # one variant
    python benchmarks/robot_ablation.py action_mulaw action_fast --bins-from-recipe-results

``--bins-from-recipe-results`` records the ``action_bins`` row from the VLA entry of
``docs/recipe_results.json`` (written by ``benchmarks/recipes.py``) instead of training it again: the
recipe's own action tokenizer is exactly that variant, so the run would be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import CLI, ROOT, last_metrics, run
from recipes import RESULTS as RECIPE_RESULTS

RESULTS = ROOT / "docs" / "robot_ablation.json"
RECIPE = "recipes/robot/encoder_decoder_vla.yaml"
# Each spec keeps the recipe's budget comparable: 32 uniform bins (the recipe's own choice), 32 mu-law
# bins over the actions' true range |a| <= 1 (Gato's M = 256 would leave most bins unused), and FAST
# with a small BPE vocabulary, since a 4-step chunk has only 8 DCT coefficients to compress.
VARIANTS: dict[str, str] = {
    "action_bins": "{name: action_bins, num_bins: 32}",
    "action_mulaw": "{name: action_mulaw, num_bins: 32, mu: 100.0, max_magnitude: 1.0}",
    "action_fast": "{name: action_fast, vocab_size: 256, scale: 10.0}",
}


def measure(variant: str, save_dir: Path) -> dict[str, object]:
    """Fit the VLA recipe with one action tokenizer and roll it out on 100 held-out scenes."""
    name = f"vla_{variant}"
    shutil.rmtree(save_dir / name, ignore_errors=True)
    fit = [
        CLI,
        "fit",
        "--config",
        RECIPE,
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.action_tokenizer={VARIANTS[variant]}",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.logger.init_args.name={name}",
    ]
    fit_seconds = run(fit)
    out = save_dir / name / "rollout"
    rollout = [
        CLI,
        "rollout",
        f"--ckpt={save_dir / name / 'checkpoints' / 'last.ckpt'}",
        "--episodes=100",
        "--execute=1",  # re-plan after every action (receding horizon), as benchmarks/recipes.py does
        f"--out={out}",
    ]
    run(rollout)
    summary = json.loads((out / "rollout.json").read_text())
    success = {row["policy"]: row["success_rate"] for row in summary["rows"]}
    return {
        "action_tokenizer": VARIANTS[variant],
        "fit_seconds": round(fit_seconds, 1),
        "val": {k: v for k, v in last_metrics(save_dir / name / "metrics.csv").items() if k.startswith("val/")},
        "success": success,
        "decode_failures": summary["decode_failures"],
        "commands": [" ".join(fit), " ".join(rollout)],
        "machine": f"{platform.machine()} {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
    }


def bins_from_recipe_results() -> dict[str, object]:
    """The ``action_bins`` row taken from the VLA recipe's entry in ``docs/recipe_results.json``."""
    entry = json.loads(RECIPE_RESULTS.read_text())["robot/encoder_decoder_vla"]
    rollout = entry["rollout"]
    return {
        "action_tokenizer": VARIANTS["action_bins"],
        "fit_seconds": entry["fit_seconds"],
        "val": entry["val"],
        "success": {row["policy"]: row["success_rate"] for row in rollout["rows"]},
        "decode_failures": rollout["decode_failures"],
        "commands": [entry["command"], "modal-tf rollout --ckpt=<its last.ckpt> --episodes=100 --execute=1"],
        "machine": entry["machine"],
        "source": "docs/recipe_results.json robot/encoder_decoder_vla (the recipe itself uses this tokenizer)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"some of {sorted(VARIANTS)} (default: all)")
    parser.add_argument("--save-dir", default="runs/robot_ablation")
    parser.add_argument("--bins-from-recipe-results", action="store_true", help="reuse the recipe's own run")
    options = parser.parse_args()
    unknown = sorted(set(options.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {sorted(VARIANTS)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if options.bins_from_recipe_results:
        results["action_bins"] = bins_from_recipe_results()
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    for variant in options.variants or ([] if options.bins_from_recipe_results else list(VARIANTS)):
        results[variant] = measure(variant, Path(options.save_dir))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
        print(json.dumps(results[variant], indent=1), flush=True)


if __name__ == "__main__":
    main()
