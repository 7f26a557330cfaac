"""The control plane's own refusals, each mapped to one HTTP status by the API shell.

Input errors are `ValueError`s naming the field (422); these cover what is not about
the input's shape: a thing that does not exist (404) or already does (409).
"""

from __future__ import annotations


class NotFound(LookupError):
    """The named instance, trace or token does not exist (404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Conflict(Exception):
    """The request clashes with what exists, e.g. a token name already taken (409)."""
