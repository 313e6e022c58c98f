"""Attention inspection: recomputed weights reproduce every attention module, and render to PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from einops import rearrange
from PIL import Image
from torch import Tensor, nn

from modal_tf.core import Block, SelfAttention, TransformerConfig
from modal_tf.inspect.attention import AttentionCall, AttentionRecorder, attention_weights
from modal_tf.inspect.command import (
    Source,
    inspect_model,
    labels_of,
    load_network,
    main,
    pick_source,
    read_input,
    write_maps,
)
from modal_tf.inspect.render import focus_grid
from modal_tf.models import DecoderOnly, EncoderDecoder, EncoderOnly, GenerationConfig
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import ByteTokenizer, PatchTokenizer, SpectrogramTokenizer, TokenBatch

TEXTS = ["Tom hit Jerry.", "Jerry ran"]  # unequal lengths: the second row is padded
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def randomize(net: nn.Module) -> nn.Module:
    """O(1) weights: peaked attention and outputs far above 1e-5, so a wrong weight cannot hide."""
    torch.manual_seed(1)
    for parameter in net.parameters():
        nn.init.normal_(parameter, std=0.3)
    return net.eval()


def build(shape: str, position: str) -> nn.Module:
    config = TransformerConfig(dim=32, depth=2, num_heads=4, position=position, max_positions=64)
    text = ByteTokenizer()
    if shape == "encoder_only":
        return randomize(EncoderOnly(config, {"text": text}, num_classes=2))
    if shape == "prefix_lm":
        return randomize(DecoderOnly(config, text, {"text": text}))
    if shape == "lm":
        return randomize(DecoderOnly(config, text))
    return randomize(EncoderDecoder(config, {"text": text}, text))


def batch(texts: list[str]) -> TokenBatch:
    tokenizer = ByteTokenizer()
    return tokenizer.collate([tokenizer.encode(text) for text in texts])


def target_batch(texts: list[str]) -> TokenBatch:
    tokenizer = ByteTokenizer()
    return tokenizer.collate([tokenizer.encode_target(text) for text in texts])


def allowed_patterns(shape: str, source: TokenBatch, target: TokenBatch) -> dict[str, Tensor]:
    """Which keys each query may see, ``(B, T, S)``, written from the masking rules, not from masks.py."""

    def pattern(valid: Tensor, causal: bool, prefix: int = 0) -> Tensor:
        slots = torch.arange(valid.shape[1])
        see = valid[:, None, :].expand(-1, valid.shape[1], -1)  # (B, T, S): real keys
        if causal:
            see = see & ((slots[None, :] <= slots[:, None]) | (slots[None, :] < prefix))
        return see | torch.eye(valid.shape[1], dtype=torch.bool)  # a padded query still sees itself

    if shape == "encoder_only":
        return {"self": pattern(torch.cat([torch.ones(2, 1, dtype=torch.bool), source.valid], 1), False)}
    if shape == "prefix_lm":
        return {"self": pattern(torch.cat([source.valid, target.valid], 1), True, source.valid.shape[1])}
    if shape == "lm":
        return {"self": pattern(target.valid, True)}
    cross = source.valid[:, None, :].expand(-1, target.valid.shape[1], -1)  # every decoder query, real memory
    return {"encoder": pattern(source.valid, False), "decoder": pattern(target.valid, True), "cross": cross}


def record(net: nn.Module, source: TokenBatch, target: TokenBatch) -> list[AttentionCall]:
    """Every attention call of one teacher-forced forward pass (a plain LM ignores ``source``)."""
    inputs = {} if isinstance(net, DecoderOnly) and not net.prefix_names else {"text": source}
    with torch.no_grad(), AttentionRecorder(net) as recorder:
        if isinstance(net, EncoderOnly):
            net(inputs)
        else:
            net(inputs, target)
    return list(recorder.maps().calls)


def mix(net: nn.Module, call: AttentionCall, weights: Tensor) -> Tensor:
    """What the module returns if it applies ``weights``: ``proj(weights @ values)``, ``(B, T, D)``."""
    module = dict(net.named_modules())[call.name]
    return module.proj(rearrange(weights @ call.values, "b h t d -> b t (h d)"))


@pytest.mark.parametrize("position", ["sinusoidal", "rope"])
@pytest.mark.parametrize("shape", ["encoder_only", "prefix_lm", "lm", "encoder_decoder"])
def test_weights_reproduce_every_attention_output(shape: str, position: str) -> None:
    net = build(shape, position)
    source = batch(TEXTS)
    # The plain LM's target is unpadded, so it takes SDPA's is_causal path instead of a mask.
    target = target_batch(["Tom hit", "abcdefg"] if shape == "lm" else ["Tom", "Jerry!"])
    calls = record(net, source, target)
    expected_kinds = ["self", "self"] if shape != "encoder_decoder" else ["self"] * 2 + ["self", "cross"] * 2
    assert [call.kind for call in calls] == expected_kinds
    assert [call.layer for call in calls] == ([0, 1] if shape != "encoder_decoder" else [0, 1, 0, 0, 1, 1])
    patterns = allowed_patterns(shape, source, target)
    with torch.no_grad():
        for call in calls:
            assert call.output.abs().max() > 0.1  # large enough that a 1e-5 match means something
            torch.testing.assert_close(mix(net, call, call.weights), call.output, atol=1e-5, rtol=0)
            torch.testing.assert_close(call.weights.sum(-1), torch.ones(call.weights.shape[:-1]), atol=1e-6, rtol=0)
            key = call.kind if shape != "encoder_decoder" or call.kind == "cross" else call.stack
            allowed = patterns[key][:, None].expand_as(call.weights)  # (B, H, T, S)
            assert bool((call.weights[~allowed] == 0).all()), "a masked key got weight"
            assert bool((call.weights[allowed] > 0).all()), "an allowed key got no weight"
            # Control: uniform weights over the same allowed keys must NOT reproduce the output.
            uniform = allowed.float() / allowed.float().sum(-1, keepdim=True)
            assert (mix(net, call, uniform) - call.output).abs().max() > 1e-3


def test_rope_rotation_is_part_of_the_weights() -> None:
    """Control for the test above: with rope, leaving the rotation out gives visibly different weights."""
    net = build("encoder_only", "rope")
    assert isinstance(net, EncoderOnly) and net.cls_token is not None
    calls = record(net, batch(TEXTS), target_batch(["x"]))
    module = dict(net.named_modules())[calls[0].name]
    block = net.encoder.blocks[0]
    assert isinstance(module, SelfAttention) and isinstance(block, Block)
    with torch.no_grad():
        x = net.embedder({"text": batch(TEXTS)})[0]
        x = block.attn_norm(torch.cat([net.cls_token.expand(2, -1, -1), x], 1))  # (B, 1 + T, D)
        q, k, _ = rearrange(module.qkv(x), "b t (three h d) -> three b h t d", three=3, h=4)
    unrotated = attention_weights(q, k)  # no rotation, no mask: the wrong weights for a rope model
    assert (unrotated[0] - calls[0].weights[0]).abs().max() > 1e-3


def test_cached_generation_records_the_rows_of_full_recomputation() -> None:
    net = build("encoder_decoder", "rope")
    assert isinstance(net, EncoderDecoder)
    source = batch(["Tom"])
    prompt = ByteTokenizer().collate([ByteTokenizer().encode_prompt()])
    with torch.no_grad(), AttentionRecorder(net) as recorder:
        output = net.generate({"text": source}, prompt, GenerationConfig(max_new_tokens=4, stop_at_eos=False))
    steps = [call for call in recorder.maps().calls if call.stack == "decoder"]
    fed = torch.cat([prompt.values, output.tokens], 1)[:, :-1]  # (1, 4): bos + the tokens fed back
    length = fed.shape[1]
    full = record(
        net, source, TokenBatch(fed, torch.arange(length)[None, :, None], torch.ones(1, length, dtype=torch.bool))
    )
    by_name = {call.name: call for call in full if call.stack == "decoder"}
    assert len(steps) == length * 4  # one cached step per fed token x 2 layers x (self, cross)
    for index, call in enumerate(steps):
        slot = index // 4  # the query slot this cached step fed
        reference = by_name[call.name].weights[:, :, slot : slot + 1, : call.weights.shape[-1]]
        assert call.weights.shape[-1] == (slot + 1 if call.kind == "self" else source.values.shape[1])
        torch.testing.assert_close(call.weights, reference, atol=1e-5, rtol=0)


def test_recorder_refuses_models_without_attention_and_random_dropout() -> None:
    with pytest.raises(ValueError, match="no SelfAttention or CrossAttention"):
        AttentionRecorder(nn.Linear(2, 2))
    config = TransformerConfig(dim=16, depth=1, num_heads=2, dropout=0.1)
    net = EncoderOnly(config, {"text": ByteTokenizer()}, num_classes=2).train()
    with pytest.raises(ValueError, match=r"model\.eval\(\)"), AttentionRecorder(net):
        pass
    net.eval()
    with AttentionRecorder(net) as recorder:
        net({"text": batch(TEXTS)})
    net({"text": batch(TEXTS)})  # after the block: hooks are gone, nothing more is recorded
    assert len(recorder.maps().calls) == 1
    with pytest.raises(ValueError, match="mask or is_causal"):
        attention_weights(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(2, 2, dtype=torch.bool), True)


@pytest.mark.parametrize("shape", ["encoder_only", "prefix_lm", "encoder_decoder", "lm"])
def test_views_label_every_query_and_key(shape: str) -> None:
    net = build(shape, "sinusoidal")
    text = ByteTokenizer()
    task = TaskSpec({"text": text}, class_names=["a", "b"]) if shape == "encoder_only" else TaskSpec({}, target=text)
    source = pick_source(task) if shape in ("encoder_only", "lm") else Source("text", text, "text")
    maps, views, prediction = inspect_model(net, task, source, "Tom $5", max_new_tokens=3)
    expected = labels_of(text, text.encode("Tom $5"))
    assert expected == ["T", "o", "m", "␣", "$", "5"]
    assert set(views) == set(maps.groups())
    for (stack, kind), calls in maps.groups().items():
        view = views[(stack, kind)]
        assert calls[0].weights.shape[2:] == (len(view.queries), len(view.keys))
        if (stack, kind) != ("decoder", "self") or shape == "prefix_lm":  # the summary's keys are the input
            assert view.keys[view.inputs] == expected
        elif shape == "lm":  # a plain LM reads its input as the target after bos
            assert view.keys[view.inputs] == ["<bos>", *expected]
    if shape == "encoder_only":
        assert views[("encoder", "self")].keys[:3] == ["[CLS]", "T", "o"] and prediction in ("a", "b")
    else:  # generated text, decoded back from the recorded target slots
        assert isinstance(prediction, str)


def png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as image:
        return image.size


def test_text_maps_render_named_png_files(tmp_path: Path) -> None:
    config = TransformerConfig(dim=16, depth=2, num_heads=1, position="rope")
    text = ByteTokenizer()
    net = randomize(EncoderOnly(config, {"text": text}, num_classes=2))
    task = TaskSpec({"text": text}, class_names=["Tom", "Jerry"])
    source = pick_source(task)
    maps, views, _ = inspect_model(net, task, source, "a $b$ c")  # "$" must stay text, not mathtext
    paths = write_maps(maps, views, source, "a $b$ c", tmp_path)
    names = {path.name for path in paths}
    assert names == {"layer0_head0.png", "layer1_head0.png", "overview.png", "cls_attention.png"}
    assert all(png_size(path)[0] > 200 for path in paths)


def test_focus_grid_puts_each_patch_at_its_row_and_column() -> None:
    patch = PatchTokenizer(patch_size=4, channels=1, mean=[0.0], std=[1.0])
    coords = patch.encode(torch.zeros(1, 12, 16)).coords  # (12, 2): 3 x 4 patches, row-major
    weights = torch.stack([torch.arange(12.0), -torch.arange(12.0)])  # (H=2, S=12)
    grid = focus_grid(weights, coords)
    torch.testing.assert_close(grid, weights.reshape(2, 3, 4))
    shuffled = torch.randperm(12)  # token order must not matter: coordinates place each patch
    torch.testing.assert_close(focus_grid(weights[:, shuffled], coords[shuffled]), grid)


def write_checkpoint(path: Path, shape: str, task: TaskSpec, num_heads: int = 2, **options: object) -> Path:
    """A real ModalModule checkpoint of an untrained one-layer model (training is not what is tested here)."""
    from modal_tf.checkpoints import save_checkpoint_file
    from modal_tf.lit import ModalModule

    position = str(options.pop("position", "sinusoidal"))
    config = TransformerConfig(dim=16, depth=1, num_heads=num_heads, position=position)
    module = ModalModule(shape=shape, transformer=config, **options)  # type: ignore[arg-type]
    module.configure_task(task)
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    save_checkpoint_file(checkpoint, path)
    return path


def test_image_cli_draws_class_token_over_the_patch_grid(tmp_path: Path) -> None:
    patch = PatchTokenizer(patch_size=4, channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    ckpt = write_checkpoint(tmp_path / "image.ckpt", "encoder_only", TaskSpec({"image": patch}, class_names=["x", "y"]))
    pixels = (np.arange(12 * 16 * 3).reshape(12, 16, 3) % 256).astype(np.uint8)  # 3 x 4 patches
    Image.fromarray(pixels).save(tmp_path / "in.png")
    np.save(tmp_path / "in.npy", pixels)
    source = pick_source(load_network(str(ckpt))[1])
    assert source.modality == "image"
    for name in ("in.png", "in.npy"):  # both decode to the same pixels
        assert np.array_equal(np.asarray(read_input(str(tmp_path / name), source)), pixels)
    out = tmp_path / "maps"
    assert main(["--ckpt", str(ckpt), "--input", str(tmp_path / "in.png"), "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "cls_attention.png",
        "layer0_head0.png",
        "layer0_head1.png",
        "overview.png",
    ]
    width, height = png_size(out / "cls_attention.png")
    assert width > 2 * height  # one row (a layer): input, 2 heads, mean side by side
    with pytest.raises(ValueError, match=r"image file .* input 'image' \(tokenizer 'patch'\)"):
        main(["--ckpt", str(ckpt), "--input", "Tom hit Jerry.", "--out", str(tmp_path / "bad")])
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        main(["--ckpt", str(ckpt), "--input", str(tmp_path / "missing.png"), "--out", str(tmp_path / "bad")])


def write_wav(path: Path) -> Path:
    time = np.arange(2400) / 8000  # 0.3 s at 8 kHz
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32), 8000)
    return path


def test_audio_cli_draws_cross_attention_over_time_frames(tmp_path: Path) -> None:
    audio = SpectrogramTokenizer(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, stack=2)
    task = TaskSpec({"audio": audio}, target=ByteTokenizer())
    ckpt = write_checkpoint(tmp_path / "audio.ckpt", "encoder_decoder", task, num_heads=1, position="rope")
    out = tmp_path / "maps"
    assert main(["--ckpt", str(ckpt), "--input", str(write_wav(tmp_path / "in.wav")), "--out", str(out)]) == 0
    names = {path.name for path in out.iterdir()}
    groups = ("encoder_self", "decoder_self", "decoder_cross")
    assert names == {f"{group}_{kind}.png" for group in groups for kind in ("layer0_head0", "overview")} | {
        "encoder_self_mean_attention.png",
        "decoder_cross_mean_attention.png",  # decoder self-attention has no input keys to summarise
    }
    assert all(png_size(out / name)[0] > 100 for name in names)
    with pytest.raises(ValueError, match=r"audio file .* input 'audio'"):
        main(["--ckpt", str(ckpt), "--input", "hello", "--out", str(out)])


def test_audio_patches_are_drawn_over_the_spectrogram(tmp_path: Path) -> None:
    audio = SpectrogramTokenizer(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, patch_size=(2, 4))
    task = TaskSpec({"audio": audio}, class_names=["a", "b"])
    ckpt = write_checkpoint(tmp_path / "patches.ckpt", "encoder_only", task, pooling="mean")
    out = tmp_path / "maps"
    assert main(["--ckpt", str(ckpt), "--input", str(write_wav(tmp_path / "in.wav")), "--out", str(out)]) == 0
    assert (out / "mean_attention.png").is_file() and not (out / "cls_attention.png").exists()
    width, height = png_size(out / "mean_attention.png")
    assert width > 2 * height  # a grid row (input, 2 heads, mean), not a strip per head


def test_text_cli_end_to_end_on_a_trained_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modal_tf.cli import main as cli_main
    from modal_tf.lit import ModalModule

    cli_main(
        [
            "fit",
            "--config",
            "recipes/text/who_did_it.yaml",
            "--trainer.max_steps=5",
            "--trainer.enable_progress_bar=false",
            "--model.transformer.depth=1",
            "--model.transformer.num_heads=2",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--data.init_args.num_train=64",
            "--data.init_args.num_val=16",
            "--data.init_args.num_test=16",
        ]
    )
    ckpt = tmp_path / "who_did_it" / "checkpoints" / "last.ckpt"
    out = tmp_path / "maps"
    assert main(["--ckpt", str(ckpt), "--input", "Tom hit Jerry.", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "prediction: 'Tom'" in printed or "prediction: 'Jerry'" in printed
    assert "encoder self layer 0 (cls):" in printed
    names = sorted(path.name for path in out.iterdir())
    assert names == ["cls_attention.png", "layer0_head0.png", "layer0_head1.png", "overview.png"]
    # The Lightning-free loader rebuilds exactly the network ModalModule.from_checkpoint does.
    net, task = load_network(str(ckpt))
    reference = ModalModule.from_checkpoint(str(ckpt)).net
    assert reference is not None and task.class_names == ["Tom", "Jerry"]
    inputs = {"text": batch(TEXTS)}
    torch.testing.assert_close(net(inputs), reference(inputs), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"reads text .* looks like an image file"):
        main(["--ckpt", str(ckpt), "--input", "cat.png", "--out", str(out)])
    with pytest.raises(ValueError, match="exactly one input"):
        pick_source(TaskSpec({"a": ByteTokenizer(), "b": ByteTokenizer()}, class_names=["x", "y"]))
