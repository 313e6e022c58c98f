"""Conformance kit for tokenizer plugins: ``check_tokenizer(tokenizer, samples)``."""

from modal_tf.testing.conformance import TokenizerContractError, check_tokenizer

__all__ = ["TokenizerContractError", "check_tokenizer"]
