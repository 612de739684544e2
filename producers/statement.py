"""A mapping query is exactly one statement: find its top-level semicolons without running it.

The importer embeds the user's query as a subquery, so a final `;` (perhaps followed by comments) must
go, and anything after a top-level `;` is a second statement, which we refuse before PostgreSQL sees
it. This scanner only has to tell SQL text apart from strings, quoted identifiers and comments; the
server is the real guard: every query runs through the extended query protocol (a prepared statement
or a server-side cursor), which refuses several statements whatever this scanner thinks.
"""

from __future__ import annotations

import re

from backfill.errors import ConfigError

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z_0-9\x80-\uffff]*)?\$")
_IDENT_CHAR = re.compile(r"[A-Za-z_0-9$\x80-\uffff]")


def _comment_end(text: str, i: int) -> int | None:
    """Where the `--` or `/* */` comment starting at `i` ends (block comments nest); None if it never closes."""
    n = len(text)
    if text.startswith("--", i):
        end = text.find("\n", i)
        return n if end < 0 else end + 1
    depth, i = 1, i + 2
    while i < n and depth:
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return None if depth else i


def _semicolons(query: str) -> list[int] | None:
    """Offsets of the top-level semicolons; None when a string, identifier or comment is left open."""
    found: list[int] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if (c == "-" and query.startswith("--", i)) or (c == "/" and query.startswith("/*", i)):
            end = _comment_end(query, i)
            if end is None:
                return None
            i = end
        elif c == "'":
            # E'...' strings escape with a backslash; standard strings only double the quote.
            escapes = i > 0 and query[i - 1] in "eE" and (i < 2 or not _IDENT_CHAR.match(query[i - 2]))
            i += 1
            while i < n:
                if escapes and query[i] == "\\":
                    i += 2
                elif query[i] == "'":
                    if query.startswith("''", i):
                        i += 2
                    else:
                        break
                else:
                    i += 1
            if i >= n:
                return None
            i += 1
        elif c == '"':
            end = i + 1
            while True:
                end = query.find('"', end)
                if end < 0:
                    return None
                if query.startswith('""', end):
                    end += 2
                    continue
                break
            i = end + 1
        elif c == "$" and (i == 0 or not _IDENT_CHAR.match(query[i - 1])):
            tag = _DOLLAR_TAG.match(query, i)
            if tag is None:
                i += 1
                continue
            end = query.find(tag.group(0), tag.end())
            if end < 0:
                return None
            i = end + len(tag.group(0))
        elif c == ";":
            found.append(i)
            i += 1
        else:
            i += 1
    return found


def _only_comments(text: str) -> bool:
    """Whether `text` holds nothing but whitespace and comments."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith(("--", "/*"), i):
            end = _comment_end(text, i)
            # A comment left open runs to the end: nothing but comment follows.
            i = n if end is None else end
        else:
            return False
    return True


def single_statement(entity: str, query: str) -> str:
    """The query without its final `;`; a ConfigError naming the entity when it holds more statements."""
    marks = _semicolons(query)
    if marks is None:
        # An open quote or comment: PostgreSQL names the problem better than we could.
        return query
    kept = query
    for offset in reversed(marks):
        if _only_comments(kept[offset + 1 :]):
            kept = kept[:offset] + " " + kept[offset + 1 :]
        else:
            raise ConfigError(
                f"{entity} query holds more than one SQL statement (text follows the `;` at character {offset + 1}): "
                "a mapping query must be exactly one SELECT"
            )
    if _only_comments(kept):
        raise ConfigError(f"{entity} query is empty (only comments)")
    return kept


def embedded(query: str) -> str:
    """The query as a subquery body: newlines around it so a trailing `-- comment` cannot eat the `)`."""
    return f"\n{query}\n"
