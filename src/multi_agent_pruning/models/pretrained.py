"""Loading timm's pretrained weights without hanging on machines that have no internet.

huggingface_hub retries a failed connection with back-off for close to a minute per file. We
first probe the Hub with one short TCP connect; when it does not answer (or ``HF_HUB_OFFLINE``
is set) the weights are loaded from the local cache only, so a cluster worker whose cache was
filled by :class:`~multi_agent_pruning.tools.ModelDownloader` loads them at once and a worker
without them fails in well under a second.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import timm
from torch import nn

from multi_agent_pruning.exceptions import ModelDownloadError

__all__ = ["hub_endpoint", "hub_offline_mode", "hub_reachable", "load_pretrained_timm", "offline_requested"]

logger = logging.getLogger(__name__)

DEFAULT_HUB_TIMEOUT = 5.0
_TRUE = {"1", "true", "yes", "on"}
_offline_lock = threading.Lock()
_offline_depth = 0
_offline_saved: bool | None = None


def hub_endpoint() -> str:
    """The Hugging Face Hub URL that timm downloads from (honours ``HF_ENDPOINT``)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def offline_requested() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now, at call time."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def hub_reachable(timeout: float = DEFAULT_HUB_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` seconds."""
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError as error:
        logger.info("Hugging Face Hub %s is unreachable: %s", hub_endpoint(), error)
        return False


@contextmanager
def hub_offline_mode() -> Iterator[None]:
    """Puts huggingface_hub in offline (cache-only) mode while any caller is inside.

    The flag is process-wide, so nested and concurrent users are counted and the original
    value comes back only when the last one leaves.
    """
    global _offline_depth, _offline_saved
    from huggingface_hub import constants

    with _offline_lock:
        if _offline_depth == 0:
            _offline_saved = constants.HF_HUB_OFFLINE
            constants.HF_HUB_OFFLINE = True
        _offline_depth += 1
    try:
        yield
    finally:
        with _offline_lock:
            _offline_depth -= 1
            if _offline_depth == 0:
                constants.HF_HUB_OFFLINE = bool(_offline_saved)


def load_pretrained_timm(
    model_name: str,
    timm_name: str,
    kwargs: Mapping[str, Any],
    *,
    timeout: float = DEFAULT_HUB_TIMEOUT,
    offline: bool | None = None,
) -> nn.Module:
    """``timm.create_model(timm_name, pretrained=True, **kwargs)``, failing fast when offline.

    Args:
        model_name: The name the user asked for, used in error messages.
        timm_name: timm's architecture name.
        kwargs: Further ``timm.create_model`` arguments (num_classes, in_chans, img_size, ...).
        timeout: Seconds to wait for the Hub to accept a connection.
        offline: Force cache-only loading (True) or the normal online path (False); None
            decides from ``HF_HUB_OFFLINE`` and a connection probe.

    Raises:
        ModelDownloadError: The weights are neither downloadable nor in the local cache.
    """
    if offline is None:
        offline = offline_requested() or not hub_reachable(timeout)
    try:
        if offline:
            with hub_offline_mode():
                return timm.create_model(timm_name, pretrained=True, **kwargs)
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    except Exception as error:  # timm/hub raise OSError, HTTP and runtime errors alike
        raise ModelDownloadError(_download_message(model_name, timm_name, offline, error)) from error


def _download_message(model_name: str, timm_name: str, offline: bool, error: Exception) -> str:
    if offline:
        from huggingface_hub import constants

        reason = (
            f"the Hugging Face Hub ({hub_endpoint()}) is unreachable or HF_HUB_OFFLINE is set, "
            f"and they are not in the local cache ({constants.HF_HUB_CACHE})"
        )
    else:
        reason = f"{type(error).__name__}: {error}"
    return (
        f"Pretrained weights for model {model_name!r} (timm model {timm_name!r}) could not be fetched: {reason}. "
        "Pre-fetch them on a machine with internet access with "
        "multi_agent_pruning.tools.ModelDownloader, or pass checkpoint=PATH."
    )
