"""Errors shared across tiers.

At the bottom of the import graph, beside nothing: a tier that must report a bad setting
(the ingest tier opening its database, the wiring binding a listener) raises
``ConfigError`` from here without importing the config loader, so config stays data and
no tier depends on how it is read.
"""

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """Bad configuration; the message names the key path (``broker.max_inflight: ...``)."""
