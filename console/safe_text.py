"""Text from the source, the API or the state database, made safe to show: on a terminal, in HTML, in a spreadsheet.

Ids, messages and response bodies are data someone else wrote. An id carrying `ESC [2J` would clear the
operator's terminal, one carrying U+202E would show its text reversed, and a CSV cell that starts with
`=` is run as a formula by spreadsheets. Every human-facing output of the operator tools goes through
`visible`; `errors --csv` also through `csv_cell`. JSON output stays exact (its encoding escapes control
characters already).
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 control characters, DEL, and the Unicode direction overrides ("Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# OWASP's CSV injection rule: a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def visible(value: Any) -> str:
    """`value` as text with every control character shown as an escape (`\\x1b`, `\\n`, `\\u202e`)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return _CONTROL.sub(_escape, text)


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: control characters escaped, a leading formula character quoted with `'`."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    neutral = "'" + text if text.startswith(_FORMULA_START) else text
    return visible(neutral)
