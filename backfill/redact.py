"""The one redaction of the importer: the API key in every encoding, and passwords in database URLs.

Used on everything we keep or print: response bodies and error messages (api), alerts, the workers'
recorded errors and the CLI's error lines. It runs on the whole text *before* any truncation, so a key
cut in half by a length limit is never kept; a key cut by the end of what we received (a body over
MAX_RESPONSE_BYTES) is caught by the trailing-prefix rule below.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import orjson

MARK = "[redacted]"
# A trailing fragment of the key shorter than this is not removed: too many ordinary words match.
_MIN_FRAGMENT = 6
# scheme://user:PASSWORD@host — the password is everything between the first ':' after the user and '@'.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*:)(?P<pw>[^@\s'\"]*)(?P<at>@)")
# libpq keyword strings: password=secret
_KEYWORD_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|[^\s'\"]+)")


def redact(value: str | None, secret: str | Iterable[str | None] | None = None) -> str | None:
    """`value` with every known encoding of each secret and every URL password replaced by [redacted]."""
    if value is None:
        return None
    secrets = [secret] if isinstance(secret, str) or secret is None else list(secret)
    text = value
    for one in secrets:
        if one:
            text = _redact_secret(text, one)
    return _redact_passwords(text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message (for handlers: records of any logger)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the message in place when it holds a secret; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            # A formatted traceback is cached on the record: redact it once, here.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True


def install_log_redaction(secrets: Iterable[str], logger: logging.Logger | None = None) -> RedactingFilter:
    """Add a RedactingFilter to every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    redactor = RedactingFilter(secrets)
    for handler in target.handlers:
        handler.addFilter(redactor)
    return redactor


def truncate(text: str, limit: int, total: int | None = None) -> str:
    """At most `limit` characters, saying how much there was; call it on redacted text only."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... ({total if total is not None else len(text)} {'bytes' if total is not None else 'characters'} in all)"


def _redact_passwords(text: str) -> str:
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m["head"] + MARK + m["at"], text)
    if "password" in text.lower():
        text = _KEYWORD_PASSWORD.sub(lambda m: m["head"] + MARK, text)
    return text


def _redact_secret(text: str, secret: str) -> str:
    for form in encodings(secret):
        if form in text:
            text = text.replace(form, MARK)
    # Percent-encoding may come with lower-case hex digits.
    for form in _percent_forms(secret):
        if len(form) > len(secret):
            text = re.sub(re.escape(form), MARK, text, flags=re.IGNORECASE)
    return _strip_trailing_fragment(text, secret)


@functools.lru_cache(maxsize=64)
def encodings(secret: str) -> tuple[str, ...]:
    """Every form of `secret` we look for, longest first (so a longer form is replaced whole)."""
    # `Bearer KEY` needs no form of its own: the raw key inside it is replaced, `Bearer` is kept.
    forms: set[str] = {secret}
    raw = secret.encode()
    escaped = orjson.dumps(secret).decode()[1:-1]
    forms.add(escaped)
    forms.add(_ascii_json(secret))
    # JSON inside JSON (an error body quoting the request): escaped twice.
    forms.add(orjson.dumps(escaped).decode()[1:-1])
    forms.update(_percent_forms(secret))
    for plain in (raw, f"Bearer {secret}".encode()):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            full = encode(plain).decode()
            forms.add(full)
            forms.add(full.rstrip("="))
    for text in {secret, escaped}:
        forms.update(_embedded_base64(text.encode()))
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def _ascii_json(secret: str) -> str:
    import json

    return json.dumps(secret)[1:-1]


def _percent_forms(secret: str) -> set[str]:
    return {quote(secret, safe=""), quote(secret), quote_plus(secret), quote_plus(secret, safe="")}


def _embedded_base64(raw: bytes) -> set[str]:
    """The characters of base64 that depend on the key alone, at each of the three alignments.

    A key inside a longer base64 text (`Authorization: Bearer KEY`, a JSON document) is encoded at
    whatever offset it falls; the middle of its encoding is the same whatever surrounds it.
    """
    out = set()
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + raw + b"\0\0").decode()
            start = -(-shift * 4 // 3)  # characters touched by the leading filler
            stop = ((shift + len(raw)) * 8) // 6  # characters fully determined by the key's last bit
            middle = encoded[start:stop]
            if len(middle) >= 8:
                out.add(middle)
    return out


def _strip_trailing_fragment(text: str, secret: str) -> str:
    """Remove a beginning of the key (in any form) that ends the text: a body cut mid-key."""
    tail = text[-(len(secret) * 3 + 10) :]
    for form in encodings(secret):
        head = form[:_MIN_FRAGMENT]
        end = len(tail)
        while (at := tail.rfind(head, 0, end)) >= 0:
            rest = tail[at:]
            if len(rest) < len(form) and form.startswith(rest):
                return text[: len(text) - len(rest)] + MARK
            end = at + len(head) - 1
    return text
