"""Cluster scaling: fixed-length trials on simulated multi-node clusters (issue 23).

Each run builds a cluster with Ray's own ``ray.cluster_utils.Cluster`` in a fresh subprocess: a
head with ``--head-cpus`` CPUs and no GPU (the driver, Tune), and worker raylets that each
declare one fake GPU and one CPU, so one trial fits a worker (``hardware.gpus_per_trial: 1``,
``cpus_per_trial: 1``). N trials of ``time.sleep(t)`` run through the real Tuner of every search,
``multi_agent_pruning.orchestrator.tune_run.build_tuner`` (per-trial resources, the
``ConcurrencyLimiter`` at the search's width, ``FailureConfig``, ``reuse_actors``), joined as a
search joins a cluster (width = ``search.max_concurrent_trials``). The searcher is a small
``Searcher`` handing out N configs: what is measured is scheduling, not proposing.

Sizes: ``fixed:k`` has k workers from the start, N = ``--rounds`` x k trials, width k.
``grow:k`` starts with no worker (nothing fits: the trials wait pending) and adds one worker
every ``--join-every`` seconds until there are k, from a thread while ``tuner.fit()`` runs;
N = ``--rounds`` x k, width k.

Metrics, from the trials' own start and end times (``time.time()`` in the trial) and the
workers' join times (``Cluster.add_node`` returned: the raylet registered and alive):
makespan = last trial end - first trial start; trials/min = N / makespan x 60. Efficiency against
the ideal = ideal makespan / makespan, the ideal being the schedule without any overhead: each
worker takes its next trial the moment it is available (from max(its join, first trial start))
and free, so for ``fixed`` it is N t / (k x makespan), and for ``grow`` it counts the trials a
late worker could not have run. utilisation = trial-seconds / worker-seconds available (from
max(join, first trial start) to the last trial end; below efficiency for ``grow``, whose last
workers idle at the end for want of trials). join->trial = for each worker, its first trial's
start - the time it became available (for ``fixed`` workers present before the search: first
trial start - fit start, i.e. Tune's start-up). ``wall`` = the whole ``tuner.fit()``.

``--reuse false`` runs with ``search.reuse_actors: false`` (a fresh trial actor per trial):
with reuse on, Tune hands a queued trial to the actor a finished trial left on another node even
when that trial's own actor is already starting on a node that just joined (Tune's
``TuneController._maybe_reuse_cached_actor``), so a joining node can wait for a later trial.

Usage:
    .venv/bin/python benchmarks/scaling.py --sizes fixed:1 fixed:2 fixed:4 grow:4 --seconds 5 \
        [--rounds 4] [--join-every 5] [--reuse true|false|both] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

_NODE = {"object_store_memory": 100 * 1024 * 1024, "include_dashboard": False}


def _sleep_trial(config: dict) -> None:
    import ray
    from ray import tune

    start = time.time()
    time.sleep(config["seconds"])
    tune.report({"score": 0.0, "node": ray.get_runtime_context().get_node_id(), "start": start,
                 "end": time.time()})


def run_one(kind: str, workers: int, seconds: float, rounds: int, join_every: float, head_cpus: int,
            reuse: bool = True) -> dict:
    """One cluster, one Tune run (in this process: call it from a fresh subprocess)."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.tune.search import Searcher

    from multi_agent_pruning.config import load_config_dict
    from multi_agent_pruning.orchestrator.tune_run import build_tuner

    trials = rounds * workers
    temp = tempfile.mkdtemp(prefix="mr-scale-", dir="/tmp")
    # No exit hooks: nodes are added from a thread (hooks install signal handlers); shutdown() stops them.
    cluster = Cluster(initialize_head=True, shutdown_at_exit=False,
                      head_node_args={**_NODE, "num_cpus": head_cpus, "num_gpus": 0, "temp_dir": temp})
    joined: dict[str, float] = {}

    def add_worker() -> None:
        node = cluster.add_node(**_NODE, num_cpus=1, num_gpus=1)
        joined[node.node_id] = time.time()

    if kind == "fixed":
        for _ in range(workers):
            add_worker()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    cfg = load_config_dict({"hardware": {"device": "auto", "cpus_per_trial": 1, "gpus_per_trial": 1},
                            "search": {"trials": trials, "max_concurrent_trials": workers, "reuse_actors": reuse}})

    class Fixed(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="score", mode="max")
            self.left = trials

        def suggest(self, trial_id: str):
            if self.left == 0:
                return Searcher.FINISHED
            self.left -= 1
            return {"seconds": seconds}

        def on_trial_complete(self, trial_id, result=None, error=False) -> None:
            pass

    def grow() -> None:
        for _ in range(workers):
            time.sleep(join_every)
            add_worker()

    grower = threading.Thread(target=grow, daemon=True) if kind == "grow" else None
    tuner = build_tuner(cfg, _sleep_trial, Fixed(), budget=trials, parallel=workers, name=f"{kind}{workers}",
                        storage=os.path.join(temp, "tune"))
    fit_start = time.time()
    if grower is not None:
        grower.start()
    grid = tuner.fit()
    wall = time.time() - fit_start
    if grower is not None:
        grower.join()
    runs = [r.metrics for r in grid if r.metrics and "start" in r.metrics]
    ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    row = summarise(kind, workers, seconds, runs, joined, fit_start, wall, errors=grid.num_errors)
    return {**row, "reuse_actors": reuse}


def summarise(kind: str, workers: int, seconds: float, runs: list[dict], joined: dict[str, float],
              fit_start: float, wall: float, errors: int) -> dict:
    first = min(r["start"] for r in runs)
    last = max(r["end"] for r in runs)
    makespan = last - first
    busy = sum(r["end"] - r["start"] for r in runs)
    available = sum(last - max(at, first) for at in joined.values())
    ideal = ideal_makespan([max(at, first) - first for at in joined.values()], len(runs), seconds)
    to_trial = []
    for node, at in joined.items():
        starts = [r["start"] for r in runs if r["node"] == node]
        if starts:
            to_trial.append(min(starts) - max(at, fit_start))
    return {"size": f"{kind}:{workers}", "workers": workers, "trials": len(runs), "errors": errors,
            "seconds": seconds, "wall_s": round(wall, 2), "makespan_s": round(makespan, 2),
            "trials_per_min": round(len(runs) / makespan * 60, 2), "efficiency": round(ideal / makespan, 3),
            "utilisation": round(busy / available, 3),
            "join_to_trial_s": [round(v, 2) for v in sorted(to_trial)],
            "nodes_used": len({r["node"] for r in runs})}


def ideal_makespan(available: list[float], trials: int, seconds: float) -> float:
    """End of the overhead-free schedule: each trial on the worker free first (workers free from
    their ``available`` offsets), every trial ``seconds`` long."""
    free = sorted(available)
    end = 0.0
    for _ in range(trials):
        start = heapq.heappop(free)
        end = max(end, start + seconds)
        heapq.heappush(free, start + seconds)
    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["fixed:1", "fixed:2", "fixed:4", "grow:4"])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one trial")
    parser.add_argument("--rounds", type=int, default=4, help="trials per worker")
    parser.add_argument("--join-every", type=float, default=5.0, help="grow: seconds between two workers joining")
    parser.add_argument("--head-cpus", type=int, default=1)
    parser.add_argument("--reuse", choices=["true", "false", "both"], default="true",
                        help="search.reuse_actors of the runs (both: each size twice)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one size in this process
    args = parser.parse_args()
    if args.one:
        kind, workers = args.one.split(":")
        print(json.dumps(run_one(kind, int(workers), args.seconds, args.rounds, args.join_every, args.head_cpus,
                                 reuse=args.reuse == "true")))
        return
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    rows = []
    reuses = ["true", "false"] if args.reuse == "both" else [args.reuse]
    for size, reuse in [(size, reuse) for size in args.sizes for reuse in reuses]:
        done = subprocess.run([sys.executable, __file__, "--one", size, "--seconds", str(args.seconds), "--rounds",
                               str(args.rounds), "--join-every", str(args.join_every), "--head-cpus",
                               str(args.head_cpus), "--reuse", reuse], capture_output=True, text=True, env=env,
                              check=False)
        if done.returncode != 0:
            print(f"{size}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["load_1min"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "argv": sys.argv[1:]}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
