"""Starting or joining Ray: local clusters quiet, without usage stats, dashboard on 127.0.0.1 and
token authentication with a fresh token per run.

Ray resolves a local node address of 127.0.0.1 to the host's address, and its GCS, raylet and
worker ports listen on all interfaces (docs/reliability.md), so a local cluster without
authentication can be driven by anyone on the network. Unless ``RAY_AUTH_MODE`` is set, the
cluster that :func:`init_ray` starts therefore requires a token: a random one made for this run,
passed to Ray's processes through the environment (``RAY_AUTH_TOKEN``) and written nowhere.
``RAY_AUTH_MODE=disabled`` (what the test suite and the Makefile use on a machine of its own)
turns it off; ``RAY_AUTH_MODE=token`` with your own ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``
uses yours."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import MutableMapping
from typing import Any

from multi_agent_pruning.compat import check_ray
from multi_agent_pruning.config import ExperimentConfig
from multi_agent_pruning.search.interrupt import reclaim_signals

logger = logging.getLogger(__name__)

__all__ = ["init_ray", "local_auth", "local_init_kwargs", "resolve_address", "started_local"]

# The GCS address of the local cluster init_ray started in this process (None: none started).
_LOCAL_GCS: str | None = None


def resolve_address(cfg: ExperimentConfig, address: str | None) -> str | None:
    """The cluster to join: ``--address``, then ``ray.address``, then ``RAY_ADDRESS``; None = local."""
    return address or cfg.ray.address or os.environ.get("RAY_ADDRESS") or None


def local_auth(environ: MutableMapping[str, str]) -> str:
    """Authentication of a local cluster we start: ``RAY_AUTH_MODE`` as the user set it, else token
    mode with a fresh random token for this run (in ``environ``: Ray's processes inherit it).
    Returns the mode."""
    mode = environ.get("RAY_AUTH_MODE")
    if mode is not None:
        if mode.lower() == "disabled":
            logger.info("RAY_AUTH_MODE=disabled: the local Ray cluster accepts unauthenticated connections")
        return mode.lower()
    environ["RAY_AUTH_MODE"] = "token"
    if not environ.get("RAY_AUTH_TOKEN") and not environ.get("RAY_AUTH_TOKEN_PATH"):
        environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    if environ is os.environ:
        _refresh_ray_auth_config()
    return "token"


def _refresh_ray_auth_config() -> None:
    """Ray reads RAY_AUTH_MODE / RAY_AUTH_TOKEN once, into its C++ config and token cache, when it
    is first imported; re-read them (as Ray itself does when it turns token mode on)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def init_ray(cfg: ExperimentConfig, address: str | None = None) -> bool:
    """Initialises Ray once per process. Returns True when this call started a local cluster."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune's own progress tables are replaced by ours; keep its console quiet.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if ray.is_initialized():
        return False
    check_ray()
    target = resolve_address(cfg, address)
    quiet = {"log_to_driver": cfg.ray.log_to_driver, "logging_level": logging.WARNING}
    if target:
        logger.info("joining the Ray cluster at %s", target)
        ray.init(address=target, **quiet)
        reclaim_signals()  # ray.init replaced the SIGTERM handler
        return False
    # When joining a cluster, Ray's own detection (RAY_AUTH_MODE, or an existing token) decides.
    local_auth(os.environ)
    ray.init(**local_init_kwargs(cfg), **quiet)
    reclaim_signals()  # ray.init replaced the SIGTERM handler
    global _LOCAL_GCS
    _LOCAL_GCS = ray.get_runtime_context().gcs_address
    return True


def started_local() -> bool:
    """Whether this process is connected to the local cluster :func:`init_ray` started (its
    size is fixed for the run by ``hardware.num_cpus`` / ``hardware.num_gpus``); False on a
    joined cluster (``--address``, ``ray.address``, ``RAY_ADDRESS``, a Ray job, or a Ray the
    caller initialised), which may grow and shrink while the search runs."""
    import ray

    return _LOCAL_GCS is not None and ray.is_initialized() and ray.get_runtime_context().gcs_address == _LOCAL_GCS


def local_init_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """``ray.init`` arguments of the local cluster ``init_ray`` starts (not the logging ones)."""
    hw = cfg.hardware
    kwargs: dict[str, Any] = {
        "num_cpus": hw.num_cpus, "num_gpus": hw.num_gpus if hw.device != "cpu" else 0,
        "include_dashboard": cfg.ray.include_dashboard, "dashboard_host": cfg.ray.dashboard_host,
        "_temp_dir": cfg.ray.temp_dir or os.path.join(tempfile.gettempdir(), "mapruner-ray"),
        "_node_ip_address": "127.0.0.1",
    }
    system: dict[str, Any] = {}
    if cfg.ray.preload_modules:
        # Workers import these at start-up (Ray's default_worker --worker-preload-modules): the
        # prestarted ones do it during init_ray's caller's own set-up, not in the first trial.
        system["preload_python_modules"] = list(cfg.ray.preload_modules)
    if cfg.ray.idle_worker_keep_s is not None:
        # The raylet stops idle workers that have idled this long once no CPU is free; Tune frees
        # none between a trial's placement group and its actor, which should get a prestarted worker.
        system["idle_worker_killing_time_threshold_ms"] = int(round(cfg.ray.idle_worker_keep_s * 1000))
    if system:
        kwargs["_system_config"] = system
    return kwargs
