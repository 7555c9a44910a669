"""Keeping secrets out of what the configuration writes or shows.

Two rules, applied where values leave the configuration (``config_to_dict``, ``repr``, error
messages): credentials inside URLs are redacted, and values of secret keys -- or values that look
like an API key wherever they were put -- are masked.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "redact_urls", "redact_tree", "mask_secrets", "looks_like_api_key"]

MASK = "**********"
_REDACTED = "***"
#: Names, split at ``_``/``-``/``.``, with a part that says secret: ``api_key``, ``apikey``,
#: ``access_token``, ``X-Amz-Signature``, ``client_secret`` (not ``max_tokens``).
_SECRET_NAME = re.compile(
    r"(?:^|[_.-])(?:api_?key|key|token|secret|password|passwd|pwd|sig|signature|credentials?|auth"
    r"|authorization|session)(?:$|[_.-])", re.IGNORECASE)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_PARAM = re.compile(r"([?&#;])([^=&#;]+)=([^&#;]*)")
_KEY_PREFIX = re.compile(
    r"(?:sk|pk|rk|gsk|hf|xai|ghp|gho|ghs|github_pat|glpat)[-_][A-Za-z0-9]|AIza|AKIA[A-Z0-9]{16}$")
_MIXED_TOKEN = re.compile(r"(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9_-]{32,}")


def redact_urls(text: str) -> str:
    """``text`` with every URL's userinfo and credential-like query/fragment values replaced by ``***``.

    ``https://u:pw@h/v1?api_key=k&model=m`` -> ``https://***@h/v1?api_key=***&model=m``.
    """
    return _URL.sub(lambda match: _redact_url(match.group(0)), text) if "://" in text else text


def _redact_url(url: str) -> str:
    url = _USERINFO.sub(rf"\1{_REDACTED}@", url)
    start = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))

    def param(match: re.Match) -> str:
        sep, name, _ = match.groups()
        return f"{sep}{name}={_REDACTED}" if _SECRET_NAME.search(name) else match.group(0)

    return url[:start] + _PARAM.sub(param, url[start:])


def redact_tree(data: Any) -> Any:
    """A copy of a JSON-like tree with :func:`redact_urls` applied to every string."""
    if isinstance(data, str):
        return redact_urls(data)
    if isinstance(data, dict):
        return {key: redact_tree(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(redact_tree(value) for value in data)
    return data


def looks_like_api_key(value: str) -> bool:
    """A known key prefix (``sk-``, ``hf_``, ...) or 32+ mixed-case letters and digits."""
    return bool(_KEY_PREFIX.match(value) or _MIXED_TOKEN.fullmatch(value))


def mask_secrets(name: str, value: Any) -> Any:
    """``value`` fit for an error message about key ``name``: secrets masked, URLs redacted."""
    if value is None:
        return None
    if _SECRET_NAME.search(name) or (isinstance(value, str) and looks_like_api_key(value)):
        return MASK
    if isinstance(value, dict):
        return {key: mask_secrets(str(key), item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_secrets(name, item) for item in value)
    return redact_urls(value) if isinstance(value, str) else value
