"""Weight converters between other libraries' checkpoints and modal_tf models.

Checkpoint-specific parameter names (timm's ``blocks.0.attn.qkv``) live in these files only.
"""

from modal_tf.convert.timm_vit import from_timm_vit, to_timm_vit, unsupported_features

__all__ = ["from_timm_vit", "to_timm_vit", "unsupported_features"]
