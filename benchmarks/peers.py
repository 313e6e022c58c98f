"""The models our core is measured against, all built at one shape from random init.

Notation: B batch, T tokens, V vocabulary, D model dim.

Every contender is a pre-LayerNorm Transformer with a GELU MLP 4x wide, learned absolute positions and a head tied
to the token embedding, so parameter counts agree within ~1 % and the same FLOPs are done:

* ``ours``: ``modal_tf.models.DecoderOnly`` (causal) or ``EncoderOnly`` (bidirectional) over ``modal_tf.core``;
* ``reference``: a ~40-line nanoGPT-style model (fused qkv, ``F.scaled_dot_product_attention``);
* ``nn.TransformerEncoder``: PyTorch's own layers (``norm_first=True``);
* ``x-transformers``: lucidrains' ``TransformerWrapper`` with ``attn_flash=True`` (SDPA);
* ``hf GPT2``: Hugging Face ``GPT2LMHeadModel`` with ``attn_implementation="sdpa"`` (causal only).

The last two come from the ``bench`` extra (``pip install -e ".[bench]"``); when one is missing it is left out
with a note, never faked.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modal_tf.core import TransformerConfig
from modal_tf.models import DecoderOnly, EncoderOnly
from modal_tf.tokenizers import DiscreteTokenizer, TokenBatch, Tokens

Forward = Callable[[Tensor], Tensor]  # ids (B, T) -> logits (B, T, V)


@dataclass(frozen=True)
class Shape:
    """One model size shared by every contender."""

    vocab: int = 512
    dim: int = 256
    depth: int = 6
    heads: int = 4
    seq: int = 256


class IdTokenizer(DiscreteTokenizer):
    """Bare integer ids ``[0, vocab)``, so our models can take random ids of any ``vocab``."""

    pad_id, bos_id, eos_id = 0, 1, 2  # type: ignore[assignment]  # benchmarks feed random ids; never decoded

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    @property
    def vocab_size(self) -> int:
        return self.vocab

    def encode(self, raw: Any) -> Tokens:
        ids = torch.as_tensor(raw, dtype=torch.long)
        return Tokens(ids, torch.arange(ids.shape[0])[:, None])

    def decode(self, ids: Sequence[int] | Tensor) -> list[int]:
        return self.check_ids(ids)

    def config(self) -> dict[str, Any]:
        return {"vocab": self.vocab}


def core_config(shape: Shape) -> TransformerConfig:
    """Our core at ``shape``, configured like GPT-2 (LayerNorm, GELU, biases, learned positions, no dropout)."""
    return TransformerConfig(
        dim=shape.dim, depth=shape.depth, num_heads=shape.heads, mlp_ratio=4.0, mlp="gelu", norm="layernorm",
        dropout=0.0, bias=True, position="learned", max_positions=shape.seq,
    )  # fmt: skip


def as_batch(ids: Tensor) -> TokenBatch:
    """Random ids ``(B, T)`` as our models' input: coordinates ``0..T-1`` along one axis, all valid."""
    coords = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)[..., None]  # (B, T, 1)
    return TokenBatch(ids, coords, torch.ones_like(ids, dtype=torch.bool))


def gpt_init(module: nn.Module) -> None:
    """GPT-2 / nanoGPT init (weights N(0, 0.02), zero biases), as our core uses, so values are alike."""
    for name, param in module.named_parameters(recurse=False):
        if isinstance(module, (nn.Linear, nn.Embedding, nn.MultiheadAttention)):
            nn.init.normal_(param, std=0.02) if "weight" in name else nn.init.zeros_(param)


class RefBlock(nn.Module):
    """nanoGPT block: ``x + attn(ln(x))``, ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.fc_proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (
            z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(self.ln_1(x)).split(d, 2)
        )  # each (B, H, T, Dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, Dh)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class RefGPT(nn.Module):
    """nanoGPT: token + learned position embeddings, pre-LN blocks, final LN, tied head."""

    def __init__(self, shape: Shape, causal: bool) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(shape.vocab, shape.dim), nn.Embedding(shape.seq, shape.dim)
        self.blocks = nn.ModuleList(RefBlock(shape.dim, shape.heads, causal) for _ in range(shape.depth))
        self.ln_f = nn.LayerNorm(shape.dim)
        self.head = nn.Linear(shape.dim, shape.vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(gpt_init)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class TorchLM(nn.Module):
    """``nn.TransformerEncoder`` (pre-LN, GELU) with learned positions and a tied head; causal mask optional."""

    def __init__(self, shape: Shape, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.tok, self.pos = nn.Embedding(shape.vocab, shape.dim), nn.Embedding(shape.seq, shape.dim)
        layer = nn.TransformerEncoderLayer(
            shape.dim, shape.heads, 4 * shape.dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, shape.depth, norm=nn.LayerNorm(shape.dim), enable_nested_tensor=False
        )
        self.head = nn.Linear(shape.dim, shape.vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(gpt_init)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], device=ids.device) if self.causal else None
        return self.head(self.encoder(x, mask=mask, is_causal=self.causal))


def available(module: str) -> bool:
    """Whether an optional peer library is installed."""
    return importlib.util.find_spec(module) is not None


def x_transformers_lm(shape: Shape, causal: bool) -> nn.Module:
    """x-transformers at ``shape``: SDPA attention, LayerNorm, GELU MLP 4x, learned positions, tied head."""
    from x_transformers import Decoder, Encoder, TransformerWrapper

    layers = (Decoder if causal else Encoder)(
        dim=shape.dim, depth=shape.depth, heads=shape.heads, attn_dim_head=shape.dim // shape.heads, attn_flash=True
    )  # its default head dim is 64 whatever the head count: set it so the work matches
    return TransformerWrapper(num_tokens=shape.vocab, max_seq_len=shape.seq, attn_layers=layers, tie_embedding=True)


def hf_gpt2(shape: Shape) -> nn.Module:
    """Hugging Face GPT-2 at ``shape`` (random init, exact GELU, SDPA attention, no dropout)."""
    import transformers

    transformers.logging.set_verbosity_error()  # a bare config warns that GPT-2's default bos/eos ids exceed vocab
    config = transformers.GPT2Config(
        vocab_size=shape.vocab, n_positions=shape.seq, n_embd=shape.dim, n_layer=shape.depth, n_head=shape.heads,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, use_cache=False,  # training builds no KV cache; generate() turns it on per call
    )  # fmt: skip
    return transformers.GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")


def ours_decoder(shape: Shape) -> tuple[nn.Module, Forward]:
    """Our decoder-only model at ``shape``, built right after ``torch.manual_seed(0)``, with its ids -> logits
    closure: the model every benchmark of the decoder measures."""
    torch.manual_seed(0)
    model = DecoderOnly(core_config(shape), IdTokenizer(shape.vocab))
    return model, lambda ids: model({}, as_batch(ids))


def contenders(shape: Shape, causal: bool) -> tuple[dict[str, tuple[nn.Module, Forward]], list[str]]:
    """Every available model at ``shape`` with a closure ids -> logits, and notes on peers left out.

    Each model is built right after ``torch.manual_seed(0)``, so reruns start from the same weights.
    """
    models: dict[str, tuple[nn.Module, Forward]] = {}
    notes: list[str] = []
    if causal:
        models["ours"] = ours_decoder(shape)
    else:
        torch.manual_seed(0)
        encoder = EncoderOnly(core_config(shape), {"x": IdTokenizer(shape.vocab)}, num_classes=None, pooling="mean")
        table = encoder.embedder.target_table("x")

        def ours_encoder(ids: Tensor) -> Tensor:
            hidden, _ = encoder.encode({"x": as_batch(ids)})  # (B, T, D)
            return hidden @ table.weight.T  # tied per-token head, like the peers: (B, T, V)

        models["ours"] = (encoder, ours_encoder)
    for name, build in (("reference", RefGPT), ("nn.TransformerEncoder", TorchLM)):
        torch.manual_seed(0)
        module = build(shape, causal)
        models[name] = (module, module)
    if available("x_transformers"):
        torch.manual_seed(0)
        xt = x_transformers_lm(shape, causal)
        models["x-transformers"] = (xt, xt)
    else:
        notes.append("x-transformers not installed (pip install -e '.[bench]'): left out")
    if causal and available("transformers"):
        torch.manual_seed(0)
        gpt2 = hf_gpt2(shape)
        models["hf GPT2"] = (gpt2, lambda ids: gpt2(ids).logits)
    elif causal:
        notes.append("transformers not installed (pip install -e '.[bench]'): hf GPT2 left out")
    return models, notes
