"""Settlement reports read one record per line (alpha's and beta's formats: no field holds a line end).

A record is parsed on its own line, so one malformed line (a stray quote never closed, a stray
carriage return inside a field) is that line's row error and never swallows or shifts the lines
after it: `csv` over the whole text would read every following line into the unclosed field, and
raise a bare `csv.Error` for a CR inside an unquoted field.
"""

from __future__ import annotations

import csv


def physical_lines(text: str) -> list[str]:
    """The file's lines without their line ends: LF or CRLF, or, in a file without any LF, a lone CR
    (CR-only line ends, as old spreadsheet exports write). A CR anywhere else stays in its line (a
    stray CR inside a field: that line's error). No empty last line for a file ending in a line end."""
    if "\n" not in text:
        lines = text.split("\r")
    else:
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class MalformedLineError(ValueError):
    """A line CSV cannot read as one record; the message names the problem, never the line's text."""


def split_record(line: str, delimiter: str) -> list[str]:
    """One line's fields (CSV quoting as RFC 4180: a quote opened in a field closes on its line)."""
    if '"' not in line and "\r" not in line:
        return line.split(delimiter)  # the usual line: no quoting to read
    if "\r" in line:
        raise MalformedLineError("a carriage return inside a field (a stray line end)")
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise MalformedLineError("a quote opened in a field is never closed on its line") from None
        raise MalformedLineError(f"malformed quoting ({exc})") from None
