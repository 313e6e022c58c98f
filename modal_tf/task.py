"""What a model must learn, independent of Lightning: named inputs and what to predict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modal_tf.tokenizers import DiscreteTokenizer, Tokenizer, tokenizer_from_state


@dataclass
class TaskSpec:
    """Tokenizers of the inputs and of the target, or the class names of a classification task.

    Exactly one of ``target`` (sequence generation) and ``class_names`` (classification) is set.
    """

    inputs: dict[str, Tokenizer]
    target: DiscreteTokenizer | None = None
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.target is None) == (not self.class_names):
            raise ValueError("a TaskSpec needs exactly one of target (generation) and class_names (classification)")

    @property
    def kind(self) -> str:
        """``classify`` or ``generate``."""
        return "classify" if self.class_names else "generate"

    def state_dict(self) -> dict[str, Any]:
        """JSON-typed state (tokenizer states included), safe for ``weights_only`` checkpoints."""
        return {
            "inputs": {name: tokenizer.state_dict() for name, tokenizer in self.inputs.items()},
            "target": self.target.state_dict() if self.target is not None else None,
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TaskSpec:
        """Rebuild from ``state_dict()`` output."""
        target = tokenizer_from_state(state["target"]) if state.get("target") is not None else None
        if target is not None and not isinstance(target, DiscreteTokenizer):
            raise TypeError(f"a target tokenizer must be discrete, got {type(target).__name__}")
        inputs = {name: tokenizer_from_state(item) for name, item in state["inputs"].items()}
        return cls(inputs, target, list(state.get("class_names") or []))
