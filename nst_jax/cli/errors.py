"""[I/O] The command line's two exceptions, below every other ``cli`` module."""

from __future__ import annotations


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


class RunError(Exception):
    """A failure at run time (a write that could not be done anywhere): one line, exit 1."""


__all__ = ["CliError", "RunError"]
