"""Cost of a model: parameters, FLOPs per image, inference throughput, training seconds per step.

Notation: B batch, T patches, F patch features, D classes.

Every measurement takes the model exactly as training calls it: ``net(inputs)`` on a collated
``TokenBatch`` of patches, so a timm model's reassembly of the image is part of its cost (it is
a scatter, negligible next to the network).
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from modal_tf.tokenizers import TokenBatch

Inputs = Mapping[str, TokenBatch]


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` where there is one, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters (shared tensors once)."""
    unique = {id(parameter): parameter for parameter in net.parameters() if parameter.requires_grad}
    return sum(parameter.numel() for parameter in unique.values())


def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of the CPU fused attention kernel from its ``(B, H, T, Dh)`` argument shapes.

    ``FlopCounterMode`` knows the CUDA SDPA kernels but not ``_scaled_dot_product_flash_attention_for_cpu``
    (torch 2.x), so attention would count as free on CPU: Q K^T and A V are 2 * B*H*Tq*Tk*Dh each.
    """
    batch, heads, queries, head_dim = query
    keys, value_dim = key[-2], value[-1]
    return 2 * batch * heads * queries * keys * head_dim + 2 * batch * heads * queries * keys * value_dim


def flops_per_image(net: nn.Module, inputs: Inputs) -> int:
    """Forward FLOPs (2 per multiply-add; matmuls, convolutions, attention) for the first image of ``inputs``.

    Norms, activations and pooling are not counted, as is usual for FLOP tables.
    """
    single = {name: TokenBatch(*(tensor[:1] for tensor in batch)) for name, batch in inputs.items()}
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        net(single)
    net.train(was_training)
    return int(counter.get_total_flops())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(net: nn.Module, inputs: Inputs, warmup: int = 2, repeats: int = 5) -> float:
    """Inference throughput: eval mode, no grad, median over ``repeats`` timed forwards after ``warmup``.

    The median resists a neighbour process stealing the CPU for one repeat.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"images_per_second needs warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    device = next(net.parameters()).device
    inputs = {name: batch.to(device) for name, batch in inputs.items()}
    size = next(iter(inputs.values())).values.shape[0]
    was_training = net.training
    net.eval()
    timings: list[float] = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            _synchronize(device)
            started = time.perf_counter()
            net(inputs)
            _synchronize(device)
            if index >= warmup:
                timings.append(time.perf_counter() - started)
    net.train(was_training)
    return size / statistics.median(timings)


def seconds_per_step(net: nn.Module, inputs: Inputs, labels: torch.Tensor, steps: int = 3) -> float:
    """Median seconds of one AdamW training step on a copy of ``net`` (the original is untouched).

    Used to turn a wall-clock budget into a step count for the cosine schedule.
    """
    if steps < 1:
        raise ValueError(f"seconds_per_step needs steps >= 1, got {steps}")
    probe = copy.deepcopy(net).train()
    device = next(probe.parameters()).device
    inputs = {name: batch.to(device) for name, batch in inputs.items()}
    labels = labels.to(device)
    optimizer = torch.optim.AdamW(probe.parameters())
    timings: list[float] = []
    for index in range(steps + 1):  # the first step pays one-off allocation costs: not timed
        _synchronize(device)
        started = time.perf_counter()
        loss = nn.functional.cross_entropy(probe(inputs).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _synchronize(device)
        if index:
            timings.append(time.perf_counter() - started)
    return statistics.median(timings)
