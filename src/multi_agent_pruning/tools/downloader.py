"""Pre-fetching pretrained weights into the local timm / Hugging Face cache.

Run it once on a machine with internet access (a cluster head node) so that workers without
internet load the weights from the shared cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from multi_agent_pruning.exceptions import ConfigurationError, MultiAgentPruningError
from multi_agent_pruning.models.pretrained import (
    DEFAULT_HUB_TIMEOUT,
    hub_endpoint,
    hub_reachable,
    load_pretrained_timm,
    offline_requested,
)
from multi_agent_pruning.models.registry import get_model_spec

__all__ = ["ModelDownloader"]

logger = logging.getLogger(__name__)


class ModelDownloader:
    """Downloads pretrained weights for registry (or timm) model names, several at a time.

    Args:
        num_workers: Downloads running in parallel.
        timeout: Seconds to wait for the Hugging Face Hub to accept a connection; when it does
            not, or ``HF_HUB_OFFLINE`` is set, every model is looked up in the local cache only,
            so an offline machine gets its answer in about a second instead of minutes of retries.
    """

    def __init__(self, num_workers: int = 4, timeout: float = DEFAULT_HUB_TIMEOUT) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ConfigurationError(f"num_workers must be an integer >= 1, got {num_workers!r}")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.num_workers = num_workers
        self.timeout = float(timeout)

    def download_models(self, names: Iterable[str], parallel: bool = True) -> dict[str, dict[str, Any]]:
        """Fetches each model's weights; one failure never stops the others.

        Args:
            names: Model names (registry or timm); duplicates are fetched once.
            parallel: Use ``num_workers`` threads; False fetches one after another.

        Returns:
            ``{name: {"status": "ok" | "failed", "error": str | None, "seconds": float}}``
            in the order of ``names``.
        """
        unique = list(dict.fromkeys(names))
        offline = offline_requested() or not hub_reachable(self.timeout)
        if offline:
            logger.warning("Hub %s unreachable or HF_HUB_OFFLINE set: checking the local cache only", hub_endpoint())
        if parallel and len(unique) > 1:
            with ThreadPoolExecutor(max_workers=min(self.num_workers, len(unique))) as pool:
                results = list(pool.map(lambda name: self._download_one(name, offline), unique))
        else:
            results = [self._download_one(name, offline) for name in unique]
        return dict(zip(unique, results, strict=True))

    def _download_one(self, name: str, offline: bool) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            spec = get_model_spec(name)
            if spec.timm_name is None:
                raise ConfigurationError(f"model {name!r} has no pretrained weights (it is trained from scratch)")
            # Building the model proves the fetched file loads, not only that it exists.
            load_pretrained_timm(name, spec.timm_name, dict(spec.kwargs), timeout=self.timeout, offline=offline)
        except MultiAgentPruningError as error:
            return self._failed(name, str(error), start)
        except Exception as error:  # one broken model must not abort the batch
            return self._failed(name, f"{type(error).__name__}: {error}", start)
        seconds = time.perf_counter() - start
        logger.info("Fetched pretrained weights for %s in %.1f s", name, seconds)
        return {"status": "ok", "error": None, "seconds": seconds}

    @staticmethod
    def _failed(name: str, message: str, start: float) -> dict[str, Any]:
        logger.warning("Could not download %s: %s", name, message)
        return {"status": "failed", "error": message, "seconds": time.perf_counter() - start}
