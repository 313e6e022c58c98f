"""Recipe data (training layer: imports Lightning)."""

from modal_tf.datamodules.base import ModalDataModule
from modal_tf.datamodules.text import TextClassification, TextLM, TextPairs, WhoDidIt

__all__ = ["ModalDataModule", "TextClassification", "TextLM", "TextPairs", "WhoDidIt"]
