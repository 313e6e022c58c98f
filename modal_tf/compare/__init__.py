"""``modal-tf compare``: our ViT against timm CNN baselines under one data pipeline and one budget.

Layout: ``config`` (frozen settings), ``catalogue`` (the comparable models), ``stems`` (small-image
stems for timm CNNs), ``data`` (splits loaded once), ``measure`` (parameters, FLOPs, throughput),
``recorder`` (per-run Lightning callback), ``harness`` (training runs), ``summary`` (mean/std and
the data-size verdict), ``report`` / ``plots`` (CSV, JSON, Markdown, PNG), ``command`` (the CLI).
"""

from modal_tf.compare.command import main

__all__ = ["main"]
