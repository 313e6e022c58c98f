"""Explicit attention weights for inspection, recorded beside the fast SDPA path.

Notation: B batch, H heads, T query tokens, S key tokens (self: sequence or cache slots;
cross: encoder memory), D model dim, Dh head dim.

``F.scaled_dot_product_attention`` never materialises its weights (its fused kernels cannot
return them), so the core stays fast and this module recomputes them on the side: forward
hooks on every ``SelfAttention`` / ``CrossAttention`` see each call's inputs and output, and
redo ``softmax(q k^T / sqrt(Dh))`` with the same projections, rotary rotation and mask
(Vaswani et al. 2017, https://arxiv.org/abs/1706.03762, eq. 1). Nothing in ``modal_tf.core``
changes, and nothing is recorded outside a ``with AttentionRecorder(model):`` block.

Each recorded call keeps its values and its actual output too, so a caller can check that
``proj(weights @ values)`` reproduces the module exactly (tests/test_attention_maps.py does).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from modal_tf.core.attention import CrossAttention, SelfAttention
from modal_tf.core.positions import apply_rotary

AttentionKind = Literal["self", "cross"]
_LAYER = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def attention_weights(query: Tensor, key: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
    """The weights SDPA applies, computed explicitly in float32.

    Args:
        query: ``(B, H, T, Dh)``.
        key: ``(B, H, S, Dh)``.
        mask: Bool mask broadcastable to ``(B, H, T, S)`` (True = may attend) or an additive float mask.
        is_causal: SDPA's built-in causal mask, aligned top-left (query t sees keys ``<= t``).

    Returns:
        ``(B, H, T, S)`` float32; each row sums to 1 and masked keys get exactly 0.
    """
    if mask is not None and is_causal:
        raise ValueError("attention_weights takes a mask or is_causal=True, not both (SDPA refuses them together)")
    scores = query.float() @ key.float().transpose(-2, -1) * query.shape[-1] ** -0.5  # (B, H, T, S)
    if is_causal:
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()  # (T, S)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: masked keys get exactly 0
    elif mask is not None:
        scores = scores + mask.float()  # an additive float mask, as SDPA also accepts
    return scores.softmax(dim=-1)


@dataclass(frozen=True)
class AttentionCall:
    """One recorded call of an attention module.

    Attributes:
        name: The module's qualified name in the recorded model, e.g. ``encoder.blocks.0.attn``.
        kind: ``self`` or ``cross``.
        weights: ``(B, H, T, S)`` float32 attention weights.
        values: ``(B, H, S, Dh)`` the values those weights mix.
        output: ``(B, T, D)`` what the module actually returned.
    """

    name: str
    kind: AttentionKind
    weights: Tensor
    values: Tensor
    output: Tensor

    @property
    def stack(self) -> str:
        """The stack the module sits in (``encoder``, ``decoder``, ...): its name before ``.blocks.``."""
        head, separator, _ = self.name.partition(".blocks.")
        return head if separator else ""

    @property
    def layer(self) -> int:
        """Block index within its stack, read from the module name (``blocks.<index>.``); -1 if absent."""
        match = _LAYER.search(self.name)
        return int(match.group(1)) if match else -1


@dataclass(frozen=True)
class AttentionMaps:
    """Every attention call of one recorded run, in call order."""

    calls: tuple[AttentionCall, ...]

    @property
    def self_attention(self) -> list[Tensor]:
        """``(B, H, T, S)`` weights of each self-attention call."""
        return [call.weights for call in self.calls if call.kind == "self"]

    @property
    def cross_attention(self) -> list[Tensor]:
        """``(B, H, T, S)`` weights of each cross-attention call (queries from the decoder, keys from memory)."""
        return [call.weights for call in self.calls if call.kind == "cross"]

    def groups(self) -> dict[tuple[str, AttentionKind], list[AttentionCall]]:
        """Calls keyed by ``(stack, kind)``, in first-call order; each list runs in layer order."""
        grouped: dict[tuple[str, AttentionKind], list[AttentionCall]] = {}
        for call in self.calls:
            grouped.setdefault((call.stack, call.kind), []).append(call)
        return grouped


def _self_attention(module: SelfAttention, arguments: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Weights ``(B, H, T, S)`` and values ``(B, H, S, Dh)`` of a finished ``SelfAttention`` call."""
    x: Tensor = arguments["x"]
    q, k, v = rearrange(module.qkv(x), "b t (three h d) -> three b h t d", three=3, h=module.num_heads)
    rotary = arguments["rotary"]
    if rotary is not None:  # rope rotates queries and keys before the scores, exactly as the module did
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
    cache = arguments["cache"]
    if cache is not None:
        # The hook runs after the call, so the cache already holds this call's keys: read every slot so far.
        end = arguments["cache_start"] + x.shape[1]
        k, v = cache.keys[:, :, :end], cache.values[:, :, :end]  # (B, H, S, Dh)
    return attention_weights(q, k, arguments["mask"], arguments["is_causal"]), v


def _cross_attention(module: CrossAttention, arguments: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Weights ``(B, H, T, S)`` and values ``(B, H, S, Dh)`` of a finished ``CrossAttention`` call."""
    q = rearrange(module.q(arguments["x"]), "b t (h d) -> b h t d", h=module.num_heads)
    cache = arguments["cache"]
    if cache is not None and cache.keys is not None and cache.values is not None:
        k, v = cache.keys, cache.values  # (B, H, S, Dh), filled by this call or an earlier one
    else:
        k, v = rearrange(module.kv(arguments["memory"]), "b s (two h d) -> two b h s d", two=2, h=module.num_heads)
    return attention_weights(q, k, arguments["mask"]), v


class AttentionRecorder:
    """Context manager recording the attention weights of every attention module of ``model``.

    Use::

        with AttentionRecorder(model) as recorder:
            model(inputs)
        maps = recorder.maps()

    Hooks are removed on exit. Dropout on attention weights is random, so recording a
    model in training mode with attention dropout raises ``ValueError``: call ``model.eval()``.

    Args:
        model: Any module containing ``SelfAttention`` / ``CrossAttention`` submodules.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.modules = {
            module: name for name, module in model.named_modules() if isinstance(module, SelfAttention | CrossAttention)
        }
        if not self.modules:
            raise ValueError(
                f"{type(model).__name__} has no SelfAttention or CrossAttention modules to inspect "
                "(a timm / CNN baseline has no attention maps)"
            )
        self.calls: list[AttentionCall] = []
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> AttentionRecorder:
        for module in self.modules:
            if module.training and module.dropout > 0:
                raise ValueError(
                    f"{self.modules[module]} is in training mode with dropout={module.dropout}: its weights are "
                    "random; call model.eval() before recording attention"
                )
        self.calls = []
        self._handles = [module.register_forward_hook(self._hook, with_kwargs=True) for module in self.modules]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def maps(self) -> AttentionMaps:
        """The calls recorded so far."""
        return AttentionMaps(tuple(self.calls))

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Tensor) -> None:
        # Bind like Python would, so positional and keyword calls read the same (Block passes positionally).
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        bound.apply_defaults()
        with torch.no_grad():
            if isinstance(module, SelfAttention):
                kind: AttentionKind = "self"
                weights, values = _self_attention(module, bound.arguments)
            elif isinstance(module, CrossAttention):
                kind = "cross"
                weights, values = _cross_attention(module, bound.arguments)
            else:  # registered only on the two classes above
                raise TypeError(f"cannot record attention of {type(module).__name__}")
        # clone: cached values are views of a buffer later steps write into; a copy also frees the fused qkv output
        values = values.detach().clone()  # (B, H, S, Dh)
        self.calls.append(AttentionCall(self.modules[module], kind, weights, values, output.detach()))
