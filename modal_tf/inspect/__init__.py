"""Inspection tools: explicit attention maps beside the fast SDPA path, and their rendering.

``modal_tf.inspect.attention`` records weights (torch only); ``modal_tf.inspect.render`` draws them
(matplotlib, imported only when rendering); ``modal_tf.inspect.command`` is ``modal-tf attention``.
"""

from modal_tf.inspect.attention import (
    AttentionCall,
    AttentionKind,
    AttentionMaps,
    AttentionRecorder,
    attention_weights,
)

__all__ = ["AttentionCall", "AttentionKind", "AttentionMaps", "AttentionRecorder", "attention_weights"]
