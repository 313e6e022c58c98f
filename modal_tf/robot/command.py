"""``modal-tf rollout``: closed-loop success of a trained policy beside the expert and a random policy."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from modal_tf.atomic import atomic_write_text
from modal_tf.export import pretrained_from_checkpoint
from modal_tf.robot.policy import ModelPolicy
from modal_tf.robot.rollout import evaluate, expert_policy, plot_trajectories, random_policy


def main(argv: Sequence[str]) -> int:
    """Evaluate ``--ckpt`` on held-out simulator seeds; write ``rollout.json`` and trajectory PNGs."""
    parser = argparse.ArgumentParser(prog="modal-tf rollout", description=__doc__)
    parser.add_argument("--ckpt", required=True, help="checkpoint of a tabletop recipe")
    parser.add_argument("--episodes", type=int, default=50, help="held-out episodes (eval-split seeds)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the eval split")
    parser.add_argument(
        "--execute", type=int, default=0, help="actions run per chunk before re-planning (0 = whole chunk)"
    )
    parser.add_argument("--max-steps", type=int, default=30, help="step limit per episode")
    parser.add_argument("--out", default="runs/rollout", help="folder for rollout.json and trajectory PNGs")
    options = parser.parse_args(list(argv))

    pretrained = pretrained_from_checkpoint(options.ckpt)
    policy = ModelPolicy(pretrained)
    execute = options.execute or 1_000
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    policies = (
        ("model", policy),
        ("expert", expert_policy(seed=options.seed)),
        ("random", random_policy(seed=options.seed)),
    )
    for name, act in policies:
        report = evaluate(act, options.episodes, options.seed, options.max_steps, execute=execute)
        plot_trajectories(report, out / f"{name}.png")
        rows.append({"policy": name, "success_rate": report.success_rate, "mean_steps": report.mean_steps_to_success})
    table = Table(title=f"closed-loop success on {options.episodes} held-out scenes")
    for column in ("policy", "success", "mean steps to success"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["policy"]), f"{row['success_rate']:.1%}", f"{row['mean_steps']:.1f}")
    Console().print(table)
    if policy.failures:
        print(f"{policy.failures} generated chunks did not decode (the policy held still on those steps)")
    summary = {"checkpoint": str(options.ckpt), "episodes": options.episodes, "seed": options.seed, "rows": rows}
    summary["decode_failures"] = policy.failures
    atomic_write_text(out / "rollout.json", json.dumps(summary, indent=1))
    print(f"wrote {out / 'rollout.json'} and trajectory plots {out}/model.png, expert.png, random.png")
    return 0
