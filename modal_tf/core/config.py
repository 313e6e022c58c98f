"""Frozen configuration of the modality-agnostic Transformer core."""

from __future__ import annotations

from dataclasses import dataclass

MLP_KINDS = ("gelu", "swiglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("none", "sinusoidal", "learned", "rope")


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and tricks of one Transformer stack.

    Attributes:
        dim: Model (residual stream) width D.
        depth: Number of blocks.
        num_heads: Attention heads H; ``dim`` must be divisible by it.
        mlp_ratio: Hidden width of the MLP as a multiple of ``dim``.
        mlp: ``gelu`` (Vaswani et al. 2017 / GPT-2) or ``swiglu`` (Shazeer 2020).
        norm: ``layernorm`` or ``rmsnorm`` (Zhang & Sennrich 2019), applied pre-block.
        dropout: Dropout on attention weights, residual branches and embeddings.
        bias: Whether linear layers and LayerNorm carry a bias.
        position: How token coordinates become order information: ``none``
            (attention is order-blind), ``sinusoidal`` and ``learned`` (added to the
            embeddings, model dim split across axes), ``rope`` (rotary, per axis).
        max_positions: Largest coordinate + 1 along any axis for ``learned``
            positions; also the default KV-cache capacity bound.
        rope_base: Base of the rotary / sinusoidal frequency ladder.
    """

    dim: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    mlp: str = "gelu"
    norm: str = "layernorm"
    dropout: float = 0.0
    bias: bool = True
    position: str = "sinusoidal"
    max_positions: int = 1024
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "num_heads", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"TransformerConfig.dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.head_dim % 2:
            raise ValueError(f"TransformerConfig head_dim = dim / num_heads must be even, got {self.head_dim}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"TransformerConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.rope_base > 1.0:
            raise ValueError(f"TransformerConfig.rope_base must be > 1, got {self.rope_base!r}")
        for name, allowed in (("mlp", MLP_KINDS), ("norm", NORM_KINDS), ("position", POSITION_KINDS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"TransformerConfig.{name} must be one of {allowed}, got {value!r}")

    @property
    def head_dim(self) -> int:
        """Width Dh of one attention head."""
        return self.dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the MLP."""
        return int(self.dim * self.mlp_ratio)
