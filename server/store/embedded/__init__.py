"""The embedded backend: SQLite files in the data dir plus in-process counters, one process.

Nothing to install; what it cannot do is share state with another process, so several
workers or replicas need the distributed backend.
"""
