"""The bank account holder name: one line of printable text (pure, no I/O).

A bank's strict parser may take a line break inside a quoted CSV cell for the end of the row, and
refuses or misreads other control and format characters (NUL, tab, escape, bidi overrides, zero
width marks). They are refused where the name is set (`holder_name_checked`) and, for a name stored
before that check, made spaces where the name is written out (`holder_name_one_line`).
"""

from __future__ import annotations

import re
import unicodedata

# Unicode categories a name never needs: control (Cc), format (Cf: bidi overrides, zero width),
# surrogate, private use and unassigned (Cs, Co, Cn), line and paragraph separators (Zl, Zp)
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SPACES = re.compile(r"\s+")


def _refused(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES


def holder_name_problem(name: str) -> str | None:
    """Why this name can not go to a bank (a sentence), or None."""
    bad = sorted({f"U+{ord(c):04X}" for c in name if _refused(c)})
    if bad:
        return (
            "The account holder name must be one line of printable text: no line breaks, tabs or control "
            f"characters ({', '.join(bad[:5])})."
        )
    return None


def holder_name_one_line(name: str | None) -> str:
    """A stored name as one line: refused characters become spaces, runs of spaces one, trimmed."""
    text = "".join(" " if _refused(c) else c for c in (name or ""))
    return _SPACES.sub(" ", text).strip()
