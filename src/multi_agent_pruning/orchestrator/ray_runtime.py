"""Starting or joining Ray: local clusters on 127.0.0.1 (node address and dashboard), quiet, no
usage stats. Ray's GCS/raylet/worker ports still listen on all interfaces: see docs/reliability.md."""

from __future__ import annotations

import logging
import os
import tempfile

from multi_agent_pruning.config import ExperimentConfig

logger = logging.getLogger(__name__)

__all__ = ["init_ray", "resolve_address"]


def resolve_address(cfg: ExperimentConfig, address: str | None) -> str | None:
    """The cluster to join: ``--address``, then ``ray.address``, then ``RAY_ADDRESS``; None = local."""
    return address or cfg.ray.address or os.environ.get("RAY_ADDRESS") or None


def init_ray(cfg: ExperimentConfig, address: str | None = None) -> bool:
    """Initialises Ray once per process. Returns True when this call started a local cluster."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune's own progress tables are replaced by ours; keep its console quiet.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if ray.is_initialized():
        return False
    target = resolve_address(cfg, address)
    quiet = {"log_to_driver": cfg.ray.log_to_driver, "logging_level": logging.WARNING}
    if target:
        logger.info("joining the Ray cluster at %s", target)
        ray.init(address=target, **quiet)
        return False
    # Only a cluster we start ourselves (on 127.0.0.1) runs without token authentication; when
    # joining one, Ray's own detection (RAY_AUTH_MODE, or an existing token) decides.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    hw = cfg.hardware
    temp_dir = cfg.ray.temp_dir or os.path.join(tempfile.gettempdir(), "mapruner-ray")
    ray.init(
        num_cpus=hw.num_cpus, num_gpus=hw.num_gpus if hw.device != "cpu" else 0,
        include_dashboard=cfg.ray.include_dashboard, dashboard_host=cfg.ray.dashboard_host,
        _temp_dir=temp_dir, _node_ip_address="127.0.0.1", **quiet,
    )
    return True
