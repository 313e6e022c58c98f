"""``modal-tf attention --ckpt X --input Y --out DIR``: draw a trained model's attention for one input.

Notation: B batch (1 here), H heads, T query tokens, S key tokens, A coordinate axes.

The checkpoint's task says what the model reads: its single input's tokenizer picks the
modality (text for ``bytes`` / ``bpe``, an image file for ``patch`` tokenizers, an audio file
for ``spectrogram`` tokenizers). A classifier is run once; a generator first decodes greedily
and is then run teacher-forced on its own output, so the maps show the attention behind
what it generated. Files written per attention stack (``encoder``/``decoder``, ``self``/``cross``;
the stack prefix is dropped when the model has a single one):

* ``layer{L}_head{h}.png``: queries x keys heatmap with token labels;
* ``overview.png``: every layer and head at a glance;
* ``cls_attention.png`` (or ``mean_attention.png``): the class token's (or the mean query's)
  attention over the input, drawn as labelled strips for text and audio frames and over the
  image (or spectrogram) for 2-D patch grids.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from modal_tf.export import pretrained_from_checkpoint
from modal_tf.inspect.attention import AttentionMaps, AttentionRecorder
from modal_tf.models import DecoderOnly, EncoderDecoder, EncoderOnly, GenerationConfig
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import BPETokenizer, ByteTokenizer, DiscreteTokenizer, Tokenizer, Tokens
from modal_tf.tokenizers.patch import PatchTokenizer
from modal_tf.tokenizers.spectrogram import SpectrogramTokenizer

Modality = Literal["text", "image", "audio"]
SUFFIXES: dict[Modality, tuple[str, ...]] = {
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".npy"),
    "audio": (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"),
}


class Source(NamedTuple):
    """The model input ``--input`` feeds: its name in the task, its tokenizer and its modality."""

    name: str
    tokenizer: Tokenizer
    modality: Modality


@dataclass(frozen=True)
class View:
    """How to label and summarise one attention group (stack, kind).

    Attributes:
        queries: T query labels; keys: S key labels.
        focus: Query rows averaged for the summary map (empty: no summary for this group).
        inputs: Key slots that hold the input tokens (the summary map's columns).
        focus_name: ``cls`` or ``mean``: file name and title of the summary map.
    """

    queries: list[str]
    keys: list[str]
    focus: list[int]
    inputs: slice
    focus_name: str


def load_network(path: str | os.PathLike[str]) -> tuple[nn.Module, TaskSpec]:
    """The trained network (eval mode) and task of a ``ModalModule`` checkpoint.

    Same result as ``ModalModule.from_checkpoint(path).net`` (tested) without importing Lightning,
    which costs several seconds per command.
    """
    pretrained = pretrained_from_checkpoint(path)
    return pretrained.model, pretrained.task


def pick_source(task: TaskSpec) -> Source:
    """The single input of ``task`` (a plain LM's target), with its modality; ``ValueError`` otherwise."""
    if not task.inputs and isinstance(task.target, ByteTokenizer | BPETokenizer):  # a plain text LM
        return Source("target", task.target, "text")
    if len(task.inputs) != 1:
        raise ValueError(f"modal-tf attention needs a model with exactly one input, this one has {sorted(task.inputs)}")
    name, tokenizer = next(iter(task.inputs.items()))
    if isinstance(tokenizer, ByteTokenizer | BPETokenizer):
        return Source(name, tokenizer, "text")
    if isinstance(tokenizer, PatchTokenizer):
        return Source(name, tokenizer, "image")
    if isinstance(tokenizer, SpectrogramTokenizer):
        return Source(name, tokenizer, "audio")
    raise ValueError(
        f"modal-tf attention reads text, images and audio; input {name!r} uses tokenizer "
        f"{tokenizer.registry_name!r} ({type(tokenizer).__name__})"
    )


def read_input(value: str, source: Source) -> Any:
    """``--input`` as a raw sample for ``source``: the text itself, or a decoded image / audio file."""
    wanted = f"input {source.name!r} (tokenizer {source.tokenizer.registry_name!r})"
    suffix = Path(value).suffix.lower()
    if source.modality == "text":
        other = [kind for kind, suffixes in SUFFIXES.items() if suffix in suffixes]
        if other and not any(character.isspace() for character in value):  # a file name, not a sentence
            raise ValueError(f"this model reads text for {wanted}; got what looks like an {other[0]} file: {value!r}")
        return value
    if suffix not in SUFFIXES[source.modality]:
        raise ValueError(
            f"this model reads an {source.modality} file ({', '.join(SUFFIXES[source.modality])}) for {wanted}; "
            f"got --input {value!r}"
        )
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"--input file not found: {path}")
    if source.modality == "audio":
        from modal_tf.data.audio_io import read_audio

        return read_audio(path)
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    from PIL import Image, UnidentifiedImageError

    channels = getattr(source.tokenizer, "channels", 3)
    if channels not in (1, 3):
        raise ValueError(f"{wanted} wants {channels}-channel images: pass them as an (H, W, C) .npy file")
    try:
        with Image.open(path) as image:
            return image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"could not read image {path}: {error}") from None


def token_label(tokenizer: Tokenizer, tokens: Tokens, index: int) -> str:
    """A short label for token ``index``: its text for text ids, a time or grid coordinate otherwise."""
    if isinstance(tokenizer, DiscreteTokenizer):
        value = int(tokens.values[index])
        specials = {tokenizer.bos_id: "<bos>", tokenizer.eos_id: "<eos>", tokenizer.pad_id: "<pad>"}
        if value in specials:
            return specials[value]
        text = tokenizer.decode([value])
        if not isinstance(text, str) or not text or "\ufffd" in text:  # one byte of a multi-byte character
            return f"#{value}"
        return text.replace(" ", "␣").replace("\n", "↵")
    coords = tokens.coords[index].tolist()
    if isinstance(tokenizer, SpectrogramTokenizer):
        seconds = coords[0] * tokenizer.frames_per_token * tokenizer.hop_length / tokenizer.sample_rate
        return f"{seconds:.2f}s" if len(coords) == 1 else f"{seconds:.2f}s,f{coords[1]}"
    return ",".join(str(value) for value in coords)


def labels_of(tokenizer: Tokenizer, tokens: Tokens) -> list[str]:
    """Labels of every token of ``tokens``."""
    return [token_label(tokenizer, tokens, index) for index in range(tokens.values.shape[0])]


def _generated(net: DecoderOnly | EncoderDecoder, inputs: dict[str, Any], max_new_tokens: int) -> tuple[Tokens, str]:
    """The decoder input that produced the greedy continuation after ``inputs``, and that continuation as text.

    The decoder input is ``bos`` plus every generated token but the last (as during generation), so
    the query row of each slot holds the attention that chose the next token.
    """
    target = net.target_tokenizer
    prompt = target.collate([target.encode_prompt()])
    output = net.generate(inputs, prompt, GenerationConfig(max_new_tokens=max_new_tokens))
    new = output.tokens[0, : int(output.lengths[0])]  # (N,): up to and including eos
    ids = torch.cat([prompt.values[0], new[:-1]])  # (T = N,)
    return Tokens(ids, target.positions(ids.shape[0])), str(target.decode(new))


def inspect_model(
    net: nn.Module, task: TaskSpec, source: Source, raw: Any, max_new_tokens: int = 32
) -> tuple[AttentionMaps, dict[tuple[str, str], View], str]:
    """Run ``net`` on ``raw`` while recording attention.

    Returns:
        The maps (batch of 1), a ``View`` per ``(stack, kind)`` group, and the prediction as text.
    """
    net.eval()
    if source.name == "target":  # a plain LM: the input text is the target itself, teacher-forced after bos
        if not isinstance(net, DecoderOnly):
            raise ValueError(f"a task without inputs needs a DecoderOnly model, got {type(net).__name__}")
        tokens = net.target_tokenizer.encode_prompt(raw)
        with torch.no_grad(), AttentionRecorder(net) as recorder:
            net({}, net.target_tokenizer.collate([tokens]))
        labels = labels_of(net.target_tokenizer, tokens)
        view = View(labels, labels, list(range(len(labels))), slice(0, len(labels)), "mean")
        return recorder.maps(), {("decoder", "self"): view}, ""
    tokens = source.tokenizer.encode(raw)
    inputs = {source.name: source.tokenizer.collate([tokens])}
    labels = labels_of(source.tokenizer, tokens)
    count = len(labels)
    with torch.no_grad():
        if isinstance(net, EncoderOnly):
            with AttentionRecorder(net) as recorder:
                logits = net(inputs)  # (1, C)
            cls = net.cls_token is not None
            sequence = ["[CLS]"] * cls + labels
            focus = [0] if cls else list(range(len(sequence)))
            view = View(sequence, sequence, focus, slice(int(cls), int(cls) + count), "cls" if cls else "mean")
            return recorder.maps(), {("encoder", "self"): view}, task.class_names[int(logits.argmax())]
        if not isinstance(net, DecoderOnly | EncoderDecoder):
            raise ValueError(f"modal-tf attention inspects Transformer models, got {type(net).__name__}")
        target, prediction = _generated(net, inputs, max_new_tokens)
        with AttentionRecorder(net) as recorder:
            net(inputs, net.target_tokenizer.collate([target]))
    written = labels_of(net.target_tokenizer, target)
    slots = list(range(len(written)))
    if isinstance(net, DecoderOnly):  # prefix-LM: input slots first, then the target
        sequence = labels + written
        view = View(sequence, sequence, [count + slot for slot in slots], slice(0, count), "mean")
        return recorder.maps(), {("decoder", "self"): view}, prediction
    views = {
        ("encoder", "self"): View(labels, labels, list(range(count)), slice(0, count), "mean"),
        ("decoder", "self"): View(written, written, [], slice(0, 0), "mean"),
        ("decoder", "cross"): View(written, labels, slots, slice(0, count), "mean"),
    }
    return recorder.maps(), views, prediction


def focus_of(weights: Tensor, view: View) -> Tensor:
    """The view's focus rows of ``(1, H, T, S)`` weights, averaged, over the input keys: ``(H, S_in)``."""
    return weights[0][:, view.focus, view.inputs].mean(dim=1)


def write_maps(
    maps: AttentionMaps,
    views: dict[tuple[str, str], View],
    source: Source,
    raw: Any,
    out: Path,
    prediction: str = "",
) -> list[Path]:
    """Write every PNG (module docstring) under ``out``; return their paths. ``prediction`` joins the titles."""
    from modal_tf.inspect import render

    out.mkdir(parents=True, exist_ok=True)
    groups = maps.groups()
    paths: list[Path] = []
    for (stack, kind), calls in groups.items():
        view = views[(stack, kind)]
        prefix = "" if len(groups) == 1 else f"{stack}_{kind}_"
        layers = [call.weights[0] for call in calls]  # L x (H, T, S)
        for call, weights in zip(calls, layers, strict=True):
            paths += render.save_head_maps(weights, view.queries, view.keys, out, f"{prefix}layer{call.layer}")
        paths.append(render.save_overview(layers, out / f"{prefix}overview.png", f"{stack} {kind}-attention"))
        if view.focus:
            focus = [focus_of(call.weights, view) for call in calls]
            title = f"{stack} {kind}-attention of the {'class token' if view.focus_name == 'cls' else 'mean query'}"
            if source.modality == "text":
                title += f" over {raw if len(raw) <= 60 else raw[:57] + '...'!r}"
            title += f" (prediction: {prediction!r})" if prediction else ""
            path = out / f"{prefix}{view.focus_name}_attention.png"
            paths.append(render.save_input_focus(focus, source.tokenizer, raw, view.keys[view.inputs], path, title))
    return paths


def summarize(maps: AttentionMaps, views: dict[tuple[str, str], View], top: int = 5) -> list[str]:
    """One line per layer of each summarised group: the input tokens its focus query attends to most."""
    lines = []
    for (stack, kind), calls in maps.groups().items():
        view = views[(stack, kind)]
        if not view.focus:
            continue
        keys = view.keys[view.inputs]
        for call in calls:
            mean = focus_of(call.weights, view).mean(0)  # (S_in,): averaged over heads
            best = mean.topk(min(top, mean.shape[0]))
            ranked = zip(best.values.tolist(), best.indices.tolist(), strict=True)
            pairs = ", ".join(f"{keys[i]!r}@{i} {w:.2f}" for w, i in ranked)  # @slot: one byte recurs in a sentence
            lines.append(f"{stack} {kind} layer {call.layer} ({view.focus_name}): {pairs}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The ``modal-tf attention`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="modal-tf attention", description="render a trained model's attention maps for one input as PNGs"
    )
    parser.add_argument("--ckpt", required=True, help="a ModalModule checkpoint (.ckpt)")
    parser.add_argument("--input", required=True, help="text, or an image (.png/.jpg/.npy) or audio (.wav) file")
    parser.add_argument("--out", default="attention", help="folder for the PNG files (created)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="generation length for seq2seq / LM models")
    return parser


def main(argv: Sequence[str]) -> int:
    """Entry point of ``modal-tf attention``; raises ``ValueError`` / ``FileNotFoundError`` on bad input."""
    options = build_parser().parse_args(list(argv))
    if options.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be a positive int, got {options.max_new_tokens}")
    net, task = load_network(options.ckpt)
    source = pick_source(task)
    raw = read_input(options.input, source)
    maps, views, prediction = inspect_model(net, task, source, raw, options.max_new_tokens)
    paths = write_maps(maps, views, source, raw, Path(options.out), prediction)
    print(f"prediction: {prediction!r}")
    for line in summarize(maps, views):
        print(line)
    print(f"wrote {len(paths)} PNG files to {options.out}/")
    return 0
