"""Robot demonstrations for VLA-style recipes: image + instruction (+ state) in, an action chunk out.

Training, validation and test samples come from scripted-expert episodes on
disjoint demonstration seeds; closed-loop evaluation (``modal-tf rollout``)
runs on the simulator's separate "eval" seeds, never seen in training.
"""

from __future__ import annotations

from typing import Any

from modal_tf.data.episodes import ChunkSample, chunk_samples, load_episodes, make_demonstrations
from modal_tf.data.tabletop import DEFAULT_EXPERT_NOISE, TabletopConfig
from modal_tf.datamodules.base import ModalDataModule, Sample, require_discrete
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import tokenizer_from_spec


def policy_inputs(image: Any, instruction: str, state: Any, names: set[str]) -> dict[str, Any]:
    """The raw inputs a tabletop policy sees, restricted to the ones its task uses."""
    raw = {"image": image, "instruction": instruction, "state": state}
    return {name: raw[name] for name in names}


class TabletopDemos(ModalDataModule):
    """Scripted-expert demonstrations on the embedded tabletop, or episodes from an NPZ file.

    Args:
        source: ``tabletop`` (generated) or the path of an NPZ written by
            ``modal_tf.data.episodes.save_episodes`` (split 90/5/5 by episode).
        num_episodes: Training episodes (``tabletop``); val and test get ``num_eval_episodes`` each.
        num_eval_episodes: Validation and test episodes each.
        chunk: Actions predicted per observation (1 = per step, K > 1 = action chunking, ACT/RT-2 style).
        use_state: Feed the end-effector position as a third input.
        image_tokenizer: Tokenizer spec of the camera image.
        text_tokenizer: Tokenizer spec of the instruction.
        state_tokenizer: Tokenizer spec of the proprioceptive state.
        action_tokenizer: Tokenizer spec of the action chunk (``action_bins``, ``action_mulaw``, ``action_fast``).
        batch_size: Samples per batch.
        num_workers: DataLoader workers.
        seed: Demonstration and shuffling seed.
        expert_noise: Std of the scripted expert's action noise (``tabletop`` only), in action units.
            The noise both varies the visited states and sits in the labels, where it is pure
            noise for the policy to average out.
    """

    def __init__(
        self,
        source: str = "tabletop",
        num_episodes: int = 400,
        num_eval_episodes: int = 40,
        chunk: int = 4,
        use_state: bool = True,
        image_tokenizer: dict[str, Any] | None = None,
        text_tokenizer: dict[str, Any] | None = None,
        state_tokenizer: dict[str, Any] | None = None,
        action_tokenizer: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        expert_noise: float = DEFAULT_EXPERT_NOISE,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        if isinstance(expert_noise, bool) or not isinstance(expert_noise, int | float) or not 0 <= expert_noise < 1:
            raise ValueError(f"data.expert_noise must be a number in [0, 1), got {expert_noise!r}")
        for name, value in (("num_episodes", num_episodes), ("num_eval_episodes", num_eval_episodes), ("chunk", chunk)):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.source = source
        self.num_episodes, self.num_eval_episodes, self.chunk = num_episodes, num_eval_episodes, chunk
        self.use_state = use_state
        self.expert_noise = float(expert_noise)
        self.specs = {
            "image": dict(image_tokenizer or {"name": "patch", "patch_size": 4, "channels": 3}),
            "instruction": dict(text_tokenizer or {"name": "bytes"}),
            "state": dict(state_tokenizer or {"name": "vector", "dims": 2}),
        }
        self.action_spec = dict(action_tokenizer or {"name": "action_bins", "num_bins": 256})

    def _samples(self) -> dict[str, list[ChunkSample]]:
        if self.source == "tabletop":
            config = TabletopConfig()
            seeds = {"train": self.seed, "val": self.seed + 1_000, "test": self.seed + 2_000}
            counts = {"train": self.num_episodes, "val": self.num_eval_episodes, "test": self.num_eval_episodes}
            return {
                split: make_demonstrations(counts[split], seeds[split], self.chunk, config, self.expert_noise).samples
                for split in seeds
            }
        episodes = load_episodes(self.source)
        count = len(episodes)
        if count < 3:
            raise ValueError(f"data.source {self.source} holds {count} episodes; need at least 3 to split")
        held = max(1, count // 20)
        parts = {
            "train": episodes[: count - 2 * held],
            "val": episodes[count - 2 * held : count - held],
            "test": episodes[count - held :],
        }
        return {split: chunk_samples(items, self.chunk) for split, items in parts.items()}

    def build_splits(self) -> dict[str, list[Sample]]:
        """One sample per step: the observation and the next ``chunk`` actions ``(K, 2)``."""
        names = {"image", "instruction"} | ({"state"} if self.use_state else set())
        return {
            split: [
                {"inputs": policy_inputs(s.image, s.instruction, s.state, names), "target": s.actions} for s in samples
            ]
            for split, samples in self._samples().items()
        }

    def build_task(self) -> TaskSpec:
        """Image, instruction (and state) in; action tokens out."""
        names = ["image", "instruction"] + (["state"] if self.use_state else [])
        inputs = {name: tokenizer_from_spec(self.specs[name], f"data.{name}_tokenizer") for name in names}
        actions = require_discrete(
            tokenizer_from_spec(self.action_spec, "data.action_tokenizer"), "data.action_tokenizer"
        )
        return TaskSpec(inputs, target=actions)
