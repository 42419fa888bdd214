"""NUL characters: PostgreSQL's text and jsonb can not hold one (0x00), so a `"\\u0000"` in a string
or key that reaches the database fails the statement (DataError).

What we are sent and may refuse (a request body, an inbound webhook's ids) is checked with
`has_unstorable`; what we must keep (an answer to our own call, a signed webhook's free text) is
stored with the character replaced (`storable`).
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"

# PostgreSQL (and UTF-8) can not hold a lone UTF-16 surrogate either: JSON's `"\ud800"` escape
# reads as one in Python, and its insert fails as a NUL's does (jsonb refuses the escape, text the
# unencodable character). `unstorable`/`storable` treat both alike.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def has_unstorable(value: Any) -> bool:
    """Whether a NUL or a lone surrogate is in `value`, a string or a JSON document (its keys included)."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(has_unstorable(k) or has_unstorable(v) for k, v in value.items())
    return isinstance(value, list | tuple) and any(has_unstorable(v) for v in value)


def storable(value: Any) -> Any:
    """`value` (a string or a JSON document) with every NUL and lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(storable(v) for v in value)
    return value
