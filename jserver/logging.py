"""Logging helpers: nothing secret reaches a log line."""

import logging
import re

# token=..., _xsrf=... in query strings; Authorization and Cookie header values.
_SECRET_PATTERNS = [
    (re.compile(r"(?i)([?&](?:token|_xsrf)=)[^&\s\"']+"), r"\1[secret]"),
    (re.compile(r"(?i)(authorization:\s*(?:token|bearer)\s+)\S+"), r"\1[secret]"),
    (re.compile(r"(?i)(cookie:\s*)[^\n]+"), r"\1[secret]"),
]


def scrub(text: str) -> str:
    """Return ``text`` with tokens and cookies replaced by ``[secret]``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class ScrubSecretsFilter(logging.Filter):
    """Rewrite every record so that tokens in URLs or headers never get logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def token_prefix(token: str) -> str:
    """Return what may be logged of a token: its first four characters."""
    return token[:4] + "…"
