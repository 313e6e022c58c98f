"""The training layer: the only place that imports Lightning."""

from modal_tf.lit.allocator import KeepFreedMemory
from modal_tf.lit.compile import CompileModel
from modal_tf.lit.data_wait import DataWaitMonitor
from modal_tf.lit.module import ModalModule
from modal_tf.lit.optim import OptimizerConfig

__all__ = ["CompileModel", "DataWaitMonitor", "KeepFreedMemory", "ModalModule", "OptimizerConfig"]
