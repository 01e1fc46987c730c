"""Queues between frontends and workers: admission and consumers, in-process and on Redis, behind
the narrow interfaces of ``base`` (``Admission``, ``BatchSource``, ``Consumer``)."""
