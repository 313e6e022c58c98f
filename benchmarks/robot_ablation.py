"""Action-tokenizer ablation of the VLA recipe: same model, data and budget, only the action tokens change.

Each variant runs ``modal-tf fit`` on ``recipes/robot/encoder_decoder_vla.yaml`` with one
``--data.init_args.action_tokenizer`` override, then ``modal-tf rollout`` on 100 held-out simulator
seeds (re-planning after every action, as ``benchmarks/recipes.py`` does), one process at a time.
Results, with the exact commands, go to ``docs/robot_ablation.json``.

    python benchmarks/robot_ablation.py                 # every variant
    python benchmarks/robot_ablation.py action_mulaw    # one variant
    python benchmarks/robot_ablation.py action_bins action_mulaw --recipe-run-from-results

``--recipe-run-from-results`` records the row of the variant the recipe itself uses (read from its YAML;
``action_fast`` now) from the VLA entry of ``docs/recipe_results.json`` (written by
``benchmarks/recipes.py``) instead of training it again: that run would be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import CLI, ROOT, last_metrics, merge_entry, run
from recipes import RESULTS as RECIPE_RESULTS

RESULTS = ROOT / "docs" / "robot_ablation.json"
RECIPE = "recipes/robot/encoder_decoder_vla.yaml"
# Each spec keeps the budget comparable: 32 uniform bins, 32 mu-law bins over the actions' true range
# |a| <= 1 (Gato's M = 256 would leave most bins unused), and FAST with a small BPE vocabulary, since a
# one-step target has only 2 DCT coefficients to compress (FAST is the recipe's own choice).
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


def recipe_variant() -> str:
    """The ``VARIANTS`` key whose spec equals the recipe YAML's ``action_tokenizer``."""
    spec = yaml.safe_load((ROOT / RECIPE).read_text())["data"]["init_args"]["action_tokenizer"]
    for variant, text in VARIANTS.items():
        if yaml.safe_load(text) == spec:
            return variant
    raise SystemExit(f"{RECIPE} uses action_tokenizer {spec}, which is none of the variants {sorted(VARIANTS)}")


def recipe_run_from_results() -> dict[str, object]:
    """The recipe's own variant's row, taken from its entry in ``docs/recipe_results.json``."""
    entry = json.loads(RECIPE_RESULTS.read_text())["robot/encoder_decoder_vla"]
    rollout = entry["rollout"]
    return {
        "action_tokenizer": VARIANTS[recipe_variant()],
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
    parser.add_argument("--recipe-run-from-results", action="store_true", help="reuse the recipe's own run")
    options = parser.parse_args()
    unknown = sorted(set(options.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {sorted(VARIANTS)}")
    if options.recipe_run_from_results:
        merge_entry(RESULTS, recipe_variant(), recipe_run_from_results())
    for variant in options.variants or ([] if options.recipe_run_from_results else list(VARIANTS)):
        entry = measure(variant, Path(options.save_dir))
        merge_entry(RESULTS, variant, entry)
        print(json.dumps(entry, indent=1), flush=True)


if __name__ == "__main__":
    main()
