"""The one exception hierarchy of the off-chain package.

Every error names the input that was wrong and what was expected, so that a user (or the
overlay manager) can fix the data without reading code. Areas subclass these; they do not
invent parallel hierarchies.
"""

from __future__ import annotations


class LightPoolError(Exception):
    """Base class of every error raised on purpose by ``offchain``."""


class InvalidInput(LightPoolError, ValueError):
    """An input field had a value that is not allowed.

    ``field`` is the dotted path of the offending field (``"lots[2].quantity"``), ``expected``
    says what would have been accepted, ``got`` is the value received (repr-ed, truncated).
    """

    def __init__(self, field: str, expected: str, got: object = None) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        shown = "" if got is None else f" (got {_short_repr(got)})"
        super().__init__(f"{field}: expected {expected}{shown}")


class ChainStateError(LightPoolError):
    """The chain is not in the state the command needs (wrong chain id, missing deployment)."""


class StaleData(LightPoolError):
    """Market data older than its allowed age was about to be used."""


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
