"""Recipe data (training layer: imports Lightning)."""

from modal_tf.datamodules.base import ModalDataModule
from modal_tf.datamodules.text import WhoDidIt

__all__ = ["ModalDataModule", "WhoDidIt"]
