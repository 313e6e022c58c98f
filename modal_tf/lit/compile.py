"""``torch.compile`` for a run's network: a Lightning callback, so checkpoints and the module stay eager.

The network (``ModalModule.net``) is built in ``setup``, after the callbacks' own ``setup``, so it is compiled when
a stage starts: in place (``nn.Module.compile``), which keeps its parameters and ``state_dict`` keys, so the run's
checkpoints load into eager modules and ``ModalModule.from_checkpoint`` never compiles. The forward (training,
validation, classification, ``EncoderChunk``'s one-pass generation) runs compiled; autoregressive decoding calls
the network's own methods and stays eager.

Use it from the CLI: ``modal-tf fit --config ... --trainer.callbacks+=modal_tf.lit.CompileModel``.

On this 2-core CPU it did not pay (``benchmarks/compile.py``; figures in BENCHMARKS.md), so no recipe turns it on.
It was not measured on GPUs, nor under DDP or FSDP.
"""

from __future__ import annotations

import weakref
from typing import Literal, get_args

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import nn

Mode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]  # torch.compile's modes
MODES: tuple[str, ...] = get_args(Mode)


class CompileModel(Callback):
    """Compiles ``pl_module.net`` in place with ``torch.compile`` when fitting, validating, testing or predicting.

    Args:
        mode: ``torch.compile``'s ``mode`` (one of ``MODES``).
        dynamic: ``torch.compile``'s ``dynamic``: None marks shapes dynamic once they change (e.g. an epoch's
            short last batch), True from the start, False recompiles per shape.
    """

    def __init__(self, mode: Mode = "default", dynamic: bool | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"CompileModel.mode must be one of {MODES}, got {mode!r}")
        if dynamic is not None and not isinstance(dynamic, bool):
            raise TypeError(f"CompileModel.dynamic must be true, false or null, got {dynamic!r}")
        self.mode = mode
        self.dynamic = dynamic
        self.compiled: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # networks compiled so far (each once)

    def compile(self, pl_module: pl.LightningModule) -> None:
        """Compile ``pl_module.net`` unless already done."""
        net = getattr(pl_module, "net", None)
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"CompileModel compiles a module's built network (`net`, as ModalModule has), "
                f"got {type(pl_module).__name__} with net={type(net).__name__}"
            )
        if net in self.compiled:
            return
        net.compile(mode=self.mode, dynamic=self.dynamic)
        self.compiled.add(net)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.compile(pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.compile(pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.compile(pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.compile(pl_module)
