"""Norms and MLPs, chosen by name from tables (timm's ``_NORM_MAP`` habit).

Notation: B batch, T tokens, D model dim, F MLP hidden width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from modal_tf.core.config import TransformerConfig
from modal_tf.core.emulation import Linear


def _layer_norm(config: TransformerConfig) -> nn.Module:
    return nn.LayerNorm(config.dim, eps=config.norm_eps, bias=config.bias)


def _rms_norm(config: TransformerConfig) -> nn.Module:
    # Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467
    return nn.RMSNorm(config.dim, eps=config.norm_eps)


NORMS: dict[str, Callable[[TransformerConfig], nn.Module]] = {"layernorm": _layer_norm, "rmsnorm": _rms_norm}


class GeluMLP(nn.Module):
    """Two-layer feed-forward with GELU (GPT-2 / ViT)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.fc = Linear(config.dim, config.mlp_hidden, bias=config.bias)
        self.proj = Linear(config.mlp_hidden, config.dim, bias=config.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, D) -> (B, T, D)``."""
        return self.proj(F.gelu(self.fc(x)))


class SwiGLU(nn.Module):
    """Gated feed-forward, Shazeer 2020 (https://arxiv.org/abs/2002.05202).

    The hidden width is 2/3 of ``mlp_hidden`` so parameters match the GELU MLP.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        hidden = max(1, 2 * config.mlp_hidden // 3)
        self.fc = Linear(config.dim, 2 * hidden, bias=config.bias)  # gate and value fused
        self.proj = Linear(hidden, config.dim, bias=config.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, D) -> (B, T, D)``."""
        gate, value = self.fc(x).chunk(2, dim=-1)  # (B, T, F) each
        return self.proj(F.silu(gate) * value)


MLPS: dict[str, type[nn.Module]] = {"gelu": GeluMLP, "swiglu": SwiGLU}


def make_norm(config: TransformerConfig) -> nn.Module:
    """The norm named by ``config.norm``."""
    return NORMS[config.norm](config)


def make_mlp(config: TransformerConfig) -> nn.Module:
    """The MLP named by ``config.mlp``."""
    return MLPS[config.mlp](config)
