"""FreeLM Pruner: a context-pruning service for reasoning models."""

__version__ = "0.1.0"
