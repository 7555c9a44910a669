"""One `mapruner` search on a simulated multi-node cluster (``ray.cluster_utils.Cluster``), as a
script: ``python cluster_search.py '<spec JSON>'``; prints one JSON line with the nodes and what
happened to them.

The head declares no GPU; each worker raylet declares the fake GPUs of its spec (``num_gpus``),
so trials that ask for a GPU run only on workers, on the CPU (``search.trial.compute_device``).
The search joins the cluster through ``run_experiment(..., address=)``, as ``mapruner prune
--address`` does. Spec keys:

* ``config``, ``overrides``, ``out``, ``temp_dir``: the experiment (``--set`` style overrides);
* ``head_cpus``: CPUs of the head (the driver and the agents' actors run there);
* ``workers``: ``[{"num_cpus", "num_gpus"}]`` started before the search;
* ``event``: optional ``{"kind": "add", "node": {...}}`` (a node joins once the first row is
  stored) or ``{"kind": "remove", "after_s": s}`` (the last worker is killed ``s`` seconds after
  every declared GPU was taken, i.e. while one of its trials runs).

A script and not a test fixture: Ray allows one driver connection per process, and the test
process may hold another (the suite's session Ray).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from multi_agent_pruning.config import load_config
from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.results import ResultStore

_NODE = {"object_store_memory": 100 * 1024 * 1024, "include_dashboard": False}


def _watch(cluster: Cluster, spec: dict, log: dict, done: threading.Event) -> None:
    try:
        _act(cluster, spec, log, done)
    except Exception as err:  # noqa: BLE001 - reported in the log, which the test checks
        log["watch_error"] = repr(err)


def _act(cluster: Cluster, spec: dict, log: dict, done: threading.Event) -> None:
    event = spec.get("event") or {}
    if event.get("kind") == "add":
        store = ResultStore(Path(spec["out"]) / "results")
        while not done.is_set() and store.count() == 0:
            time.sleep(0.2)
        if not done.is_set():
            node = cluster.add_node(**_NODE, **event["node"])
            log["added"] = {"node_id": node.node_id, "at": time.time()}
    elif event.get("kind") == "remove":
        while not done.is_set() and (not ray.is_initialized() or ray.available_resources().get("GPU", 0) > 1e-6):
            time.sleep(0.1)
        time.sleep(event["after_s"])
        if not done.is_set():
            node = log["victim"]
            cluster.remove_node(log.pop("victim_node"), allow_graceful=False)
            log["removed"] = {"node_id": node, "at": time.time()}


def main(spec: dict) -> dict:
    # No exit hooks: they install signal handlers, which only the main thread may do, and nodes
    # are added from the watching thread; shutdown() below stops every node.
    cluster = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
        **_NODE, "num_cpus": spec["head_cpus"], "num_gpus": 0, "temp_dir": spec["temp_dir"]})
    log: dict = {"head": cluster.head_node.node_id, "workers": []}
    try:
        for worker in spec["workers"]:
            node = cluster.add_node(**_NODE, **worker)
            log["workers"].append(node.node_id)
            log["victim"], log["victim_node"] = node.node_id, node
        cluster.wait_for_nodes()
        cfg = load_config(spec["config"], overrides=spec["overrides"])
        done = threading.Event()
        watcher = threading.Thread(target=_watch, args=(cluster, spec, log, done), daemon=True)
        watcher.start()
        try:
            run_experiment(cfg, output_dir=spec["out"], address=cluster.address, progress=False)
        finally:
            done.set()
            watcher.join(timeout=30)
    finally:
        log.pop("victim_node", None)
        ray.shutdown()
        cluster.shutdown()
    return log


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
