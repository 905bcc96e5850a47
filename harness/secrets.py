"""Keep credentials out of everything EdgeLab writes (results, database, reports, logs).

Command lines and URLs are stored for reproducibility; their passwords and tokens are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<secret>[^@/\s]+)@"
)
_SECRET_NAME = r"(?:password|passwd|token|secret|api[_-]?key|access[_-]?key)[A-Za-z_]*"
_KEY_VALUE = re.compile(
    rf"(?P<key>{_SECRET_NAME}\s*[=:]\s*)(?P<value>[^\s,;&]+)",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(_SECRET_NAME, re.IGNORECASE)
_BEARER = re.compile(r"(?P<key>\b(?:Bearer|token)\s+)(?P<value>[A-Za-z0-9_\-.]{12,})")
_GITHUB_TOKEN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b")
MASK = "***"


def redact(text: str) -> str:
    """``text`` with URL passwords, key=value secrets, bearer tokens and GitHub tokens masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['key']}{MASK}", text)
    return _GITHUB_TOKEN.sub(MASK, text)


def redact_argv(argv: list[str]) -> list[str]:
    return [redact(argument) for argument in argv]


def redact_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """Free-form key/value pairs from the fleet file (``labels``) under the command-line rules:
    a key that names a secret (``ci_token``, ``db-password``) masks its whole value, as
    ``token=...`` would on a command line, and every key and value is redacted as text."""
    redacted: dict[str, str] = {}
    for key, value in fields.items():
        redacted[redact(key)] = MASK if _SECRET_KEY.search(key) else redact(value)
    return redacted
