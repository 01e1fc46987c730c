"""Queues between frontends and workers, all behind one interface (``base.JobQueue``)."""
