"""The weights package's one exception, in a module of its own so that ``format`` and
``locate`` both import it without importing each other."""

from __future__ import annotations


class WeightsError(ValueError):
    """A weights file or download is missing, malformed or fails its checksum."""


__all__ = ["WeightsError"]
