"""Robot evaluation: closed-loop rollouts of any policy on the tabletop, success rates, trajectory plots.

The simulator and demonstrations live in ``modal_tf.data.tabletop`` and ``modal_tf.data.episodes``.
"""

from modal_tf.robot.rollout import (
    Policy,
    RolloutReport,
    Trajectory,
    evaluate,
    expert_policy,
    plot_trajectories,
    random_policy,
)

__all__ = [
    "Policy",
    "RolloutReport",
    "Trajectory",
    "evaluate",
    "expert_policy",
    "plot_trajectories",
    "random_policy",
]
