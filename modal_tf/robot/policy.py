"""A trained network as a closed-loop tabletop policy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modal_tf.data.tabletop import Observation
from modal_tf.export import Pretrained
from modal_tf.models import GenerationConfig


class ModelPolicy:
    """Maps observations to action chunks with a trained model (greedy decoding by default).

    Attributes:
        failures: Chunks whose generated ids did not decode (the policy then holds still for a step).
    """

    def __init__(self, pretrained: Pretrained, generation: GenerationConfig | None = None) -> None:
        task = pretrained.task
        if task.target is None:
            raise ValueError("a policy needs a model that generates action tokens; this checkpoint classifies")
        unknown = set(task.inputs) - {"image", "instruction", "state"}
        if unknown:
            raise ValueError(
                f"a tabletop policy feeds image/instruction/state, but the model also wants {sorted(unknown)}"
            )
        self.model = pretrained.model
        self.task = task
        self.target = task.target
        self.generation = generation or pretrained.generation
        self.failures = 0

    def _raw(self, name: str, observation: Observation) -> Any:
        return {"image": observation.image, "instruction": observation.instruction, "state": observation.state}[name]

    @torch.no_grad()
    def __call__(self, observations: list[Observation]) -> list[np.ndarray]:
        """One ``(K, 2)`` action chunk per observation."""
        inputs = {
            name: tokenizer.collate([tokenizer.encode(self._raw(name, obs)) for obs in observations])
            for name, tokenizer in self.task.inputs.items()
        }
        prompt = self.target.collate([self.target.encode_prompt()] * len(observations))
        output = self.model.generate(inputs, prompt, self.generation)  # type: ignore[operator]
        chunks = []
        for row, length in zip(output.tokens, output.lengths, strict=True):
            ids = [value for value in row[:length].tolist() if value != self.target.eos_id]
            actions = self._decode(ids)
            if actions is None:
                self.failures += 1
                actions = np.zeros((1, 2), dtype=np.float32)
            chunks.append(actions)
        return chunks

    def _decode(self, ids: list[int]) -> np.ndarray | None:
        """The longest decodable prefix of ``ids`` as ``(k, 2)`` actions (a generated chunk may end
        mid-step); None if not even one step decodes."""
        for end in range(len(ids), 0, -1):
            try:
                actions = np.asarray(self.target.decode(ids[:end]), dtype=np.float32).reshape(-1, 2)
            except ValueError:
                continue
            if actions.shape[0]:
                return actions
        return None
