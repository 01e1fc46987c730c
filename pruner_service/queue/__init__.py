"""Queues between frontends and workers: the in-process one here, others behind the same interface."""
