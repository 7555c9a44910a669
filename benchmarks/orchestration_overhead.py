"""Orchestration overhead of the Ray Tune search path against a plain process pool.

N trials of fixed synthetic work (t seconds each) run k at a time through the real search
path, ``multi_agent_pruning.orchestrator.tune_run.build_tuner`` (per-trial resources from
``hardware``, ``ConcurrencyLimiter``, ``FailureConfig``, ``reuse_actors``), with a local Ray
started by ``init_ray``; next to it the same N work items run through
``multiprocessing.Pool(k)`` (fork, ``imap_unordered`` with chunksize 1).

The work: ``cpu`` (default) busy-waits until the trial's thread has used t seconds of CPU time
(``time.thread_time``), so CPU that Ray's driver, raylet and GCS take from the two trial
processes lengthens the trials and counts as overhead; ``sleep`` calls ``time.sleep(t)`` and
only sees scheduling latency. The trainable reports ``{"score", "row_json"}`` like the real one,
``row_json`` being a real ``TrialResult`` row. The searcher is a small ``Searcher`` that hands
out N configs: the master agent's proposal time is not in W; ``--master`` times one
``MasterAgent.execute`` + ``AnalysisAgent.execute`` on a tiny profile separately.
``--searchers master`` runs the same work through the real ``MasterSearcher`` instead (master
and analysis actors, batches of k, a TinyResNet profile made before W): the whole multi_agent
search path, proposals included.

Metrics: W = wall time of ``tuner.fit()`` (Ray already started) or of the pool (created to
joined); ideal = N t / k; overhead per trial = (W - ideal) k / N; efficiency = ideal / W.
head = first work start - W start; gap = median time a slot stays idle between trials; tail =
W end - last work end; span = mean wall time of one work item (above t when the trial's CPU was
taken by something else); procs = processes that ran trials; boot = median time from the later
of (process start, W start) to that process's first trial (interpreter, ``import ray``, the
runtime env Tune gives its actors, ``import ray.tune``); cpu = CPU seconds during W of the
driver (Tune's loop, plus this script's /proc sampler at about 0.01 CPU-s per second), Ray's
daemons (raylet, GCS, dashboard, agents) and the worker processes (trial work plus their
start-up). Every run is a fresh subprocess (fresh Ray, its own environment); ``--max-load``
waits for a quiet machine before each run and every row records the 1-minute load.

Variants (``--variants``) set environment variables for a Tune run; ``tune_actor_env`` keeps
Tune's own trial-actor runtime_env (``PL_DISABLE_FORK``), which ``build_tuner`` drops so that
trial actors start in Ray's prestarted workers: it measures what that change saves.
``preload`` sets ``ray.preload_modules: ["ray.tune"]`` (workers import it as they start; the
default again since run S, and at commits e9837a1 and 5f3a8ba of runs P-R; runs before run S and
after P-R had ``[]``) and ``no_preload`` sets it to ``[]``.
``--settle S`` starts W only once Ray's k prestarted workers are idle and done with their
start-up imports (their CPU time stopped growing; at most S seconds), as in a real search, where
profiling runs between ``init_ray`` and the search; ``settle_s`` and ``settle_cpu_s`` (those
workers' CPU seconds until then) record what was left out of W. ``--pause P`` then waits P
seconds more, during which the prestarted workers idle, as they do while a real search profiles
the model. ``ray_idle_timeout`` (and ``preload_ray_idle_timeout``) run with Ray's own idle-worker
timeout of 1 s (``ray.idle_worker_keep_s: null``) instead of mapruner's 3600 s: Ray stops idle
workers once Tune's placement groups hold every CPU, sometimes just before the trial actors
would have taken them.

Usage:
    .venv/bin/python benchmarks/orchestration_overhead.py --seconds 5 1 0.2 --work cpu sleep \
        [--reuse both] [--variants default tune_actor_env lean] [--settle 15] [--imports trial] \
        [--master] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from importlib import metadata
from typing import Self

REAL_TRIAL_MODULE = "multi_agent_pruning.search.tune_trial"
# Settings that may lower Tune's per-trial cost; each is measured, none is assumed to help.
VARIANTS = {
    "default": {},
    "no_loggers": {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"},
    "checkpoint_300s": {"TUNE_GLOBAL_CHECKPOINT_S": "300"},
    "buffer_16": {"TUNE_RESULT_BUFFER_LENGTH": "16"},
    "new_output": {"RAY_AIR_NEW_OUTPUT": "1"},
    "lean": {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TUNE_GLOBAL_CHECKPOINT_S": "300"},
    # Tune's own trial-actor runtime_env kept (before build_tuner dropped it): each slot is a new process.
    "tune_actor_env": {"MAPR_BENCH_KEEP_TUNE_ACTOR_ENV": "1"},
    # mapruner's default local cluster: token authentication with a per-run token (the other
    # variants run with RAY_AUTH_MODE=disabled, as the test suite does). None = unset.
    "token_auth": {"RAY_AUTH_MODE": None},
    # Workers import ray.tune as they start (ray.preload_modules: ["ray.tune"]), or not ([]).
    "preload": {"MAPR_BENCH_PRELOAD": "1"},
    "no_preload": {"MAPR_BENCH_PRELOAD": "0"},
    # Ray's own idle-worker timeout (1 s; ray.idle_worker_keep_s: null) instead of mapruner's.
    "ray_idle_timeout": {"MAPR_BENCH_RAY_IDLE_TIMEOUT": "1"},
    "preload_ray_idle_timeout": {"MAPR_BENCH_PRELOAD": "1", "MAPR_BENCH_RAY_IDLE_TIMEOUT": "1"},
}
RESULT_PREFIX = "RESULT "


class ProcessTreeCPU:
    """CPU seconds used by this process and its descendants while active, by kind of process.

    Reads ``/proc`` every ``period`` seconds; a process that exits loses at most its last period.
    Kinds: ``driver`` (this process), ``workers`` (Ray workers and pool processes: the trials),
    ``ray_daemons`` (raylet, GCS, dashboard, agents, monitors).
    """

    def __init__(self, period: float = 0.25) -> None:
        self.period, self.first, self.last, self.kind = period, {}, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._sample()
        self.first = dict(self.last)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def totals(self) -> dict[str, float]:
        out = {"driver": 0.0, "workers": 0.0, "ray_daemons": 0.0}
        for pid, seconds in self.last.items():
            out[self.kind[pid]] += seconds - self.first.get(pid, 0.0)
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def _sample(self) -> None:
        me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
        stats = {}
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
            except (ValueError, OSError, IndexError):
                continue
        tree, grew = {me}, True
        while grew:
            new = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
            tree, grew = tree | new, bool(new)
        for pid in tree:
            self.last[pid] = stats[pid][1]
            # Ray workers rename themselves (default_worker.py -> ray::IDLE -> ray::<actor>); an exiting
            # process has no command line, so it keeps the kind it had.
            kind = "driver" if pid == me else _process_kind(pid)
            if kind or pid not in self.kind:
                self.kind[pid] = kind or "ray_daemons"


def _process_kind(pid: int) -> str | None:
    """``workers`` or ``ray_daemons`` from the command line; None when it cannot be read (exiting)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    if not cmdline:
        return None
    if cmdline.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return "ray_daemons"
    worker_marks = ("ray::", "default_worker.py", "orchestration_overhead.py")
    return "workers" if any(mark in cmdline for mark in worker_marks) else "ray_daemons"


def process_start_time() -> float:
    """Unix time at which this process started (from /proc, to about 10 ms)."""
    with open("/proc/self/stat", encoding="utf-8") as handle:
        ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime", encoding="utf-8") as handle:
        uptime = float(handle.read().split()[0])
    # btime in /proc/stat is whole seconds; the uptime clock is not.
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def do_work(seconds: float, mode: str, imports: bool) -> tuple[float, float, int, float]:
    """One work item: (start, end) wall clock, pid and the process's start time.

    ``imports`` first loads the real trial module, as the real trainable's process does.
    """
    if imports:
        importlib.import_module(REAL_TRIAL_MODULE)
    start = time.time()
    if mode == "sleep":
        time.sleep(seconds)
    else:
        deadline = time.thread_time() + seconds
        x = 0
        while time.thread_time() < deadline:
            for i in range(1000):
                x += i * i
    return start, time.time(), os.getpid(), process_start_time()


def _pool_item(args: tuple[float, str, bool]) -> tuple[float, float, int, float]:
    return do_work(*args)


def run_pool(spec: dict) -> dict:
    items = [(spec["seconds"], spec["work"], spec["imports"])] * spec["trials"]
    with ProcessTreeCPU() as cpu:
        t0 = time.time()
        with multiprocessing.get_context("fork").Pool(spec["k"]) as pool:
            spans = list(pool.imap_unordered(_pool_item, items, chunksize=1))
        t1 = time.time()
    return {"t0": t0, "t1": t1, "spans": spans, "k": spec["k"], "cpu": cpu.totals()}


def _synthetic_row(trial_id: str) -> str:
    from multi_agent_pruning.core import Strategy
    from multi_agent_pruning.results.trial import TrialResult, strategy_columns
    from multi_agent_pruning.search.tune_trial import row_json

    now = datetime.datetime.now(datetime.UTC)
    row = TrialResult(experiment="overhead", run=0, method="synthetic", model="none", dataset="none", seed=0,
                      trial_id=trial_id, iteration=0, status="ok", top1_after=0.5, started_at=now, finished_at=now,
                      **strategy_columns(Strategy(importance="l2", target_reduction=0.5)))
    return row_json(row)


def _searcher_class():
    from ray.tune.search import Searcher

    class FixedConfigSearcher(Searcher):
        """Hands out ``configs`` in order and keeps every reported result."""

        def __init__(self, configs: list[dict]) -> None:
            super().__init__(metric="score", mode="max")
            self.configs, self.results, self.errors = list(configs), [], 0

        def suggest(self, trial_id: str) -> dict | str | None:
            return self.configs.pop(0) if self.configs else Searcher.FINISHED

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            self.errors += int(error or result is None)
            if result is not None and not error:
                self.results.append(result)

    return FixedConfigSearcher


def _tiny_profile() -> dict:
    """The profiling agent's profile of an untrained TinyResNet on digits (no cache)."""
    import torch

    from multi_agent_pruning.agents import ProfilingAgent
    from multi_agent_pruning.data import load_dataset
    from multi_agent_pruning.testing.tiny import TinyResNet, calibration_batches

    torch.manual_seed(0)
    digits = load_dataset("digits")
    return ProfilingAgent({"enable_caching": False}).execute(
        {"model": TinyResNet().eval(), "model_name": "tiny", "dataset": "digits", "input_size": (1, 16, 16),
         "calibration": calibration_batches(digits)})["profile"]


def _master_searcher(spec: dict, k: int):
    """The real ``MasterSearcher`` with real master and analysis actors on a TinyResNet profile;
    each suggestion also carries the synthetic work and a row for its strategy (built here, in
    the driver, so the trial processes import nothing more than with the fixed searcher)."""
    import ray

    from multi_agent_pruning.actors import create_actors
    from multi_agent_pruning.core.strategy import Strategy
    from multi_agent_pruning.results.trial import TrialResult, strategy_columns
    from multi_agent_pruning.search.searcher import MasterSearcher
    from multi_agent_pruning.search.tune_trial import row_json

    profile = _tiny_profile()
    master, analysis = create_actors({"batch_size": k, "max_iterations": 10 * spec["trials"],
                                      "convergence_threshold": 0.0, "seed": 0},
                                     {"safety_enforcement": "strict"}, store_root=None, experiment="overhead",
                                     method="multi_agent")
    ids = {"experiment": "overhead", "run": 0, "method": "multi_agent", "model": "tiny", "dataset": "digits",
           "seed": 0}
    # The two actors start in fresh processes (torch and the agents imported): that one-off cost
    # is measured here, before W, and reported as actor_start_s.
    start = time.time()
    ray.get([master.ping.remote(), analysis.ping.remote()])
    actor_start_s = time.time() - start

    class BenchMasterSearcher(MasterSearcher):
        def __init__(self) -> None:
            super().__init__(master, analysis, profile=profile, target={"kind": "macs", "reduction": 0.5,
                                                                        "budget": None},
                             base=Strategy(target_reduction=0.5), budget=spec["trials"], batch_size=k,
                             identifiers=ids, history=[], record=lambda row: None,  # rows are not kept
                             reveal_lag=k - 1)  # as run_search with search.reproducible (the default)
            self.results, self.errors, self.count = [], 0, 0
            self.actor_start_s = actor_start_s

        def suggest(self, trial_id: str):
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            self.count += 1
            strategy = Strategy.from_json(config["strategy"])
            now = datetime.datetime.now(datetime.UTC)
            # A made-up score that differs between strategies, so the policy has something to rank.
            score = 0.5 + (zlib.crc32(strategy.key().encode()) % 1000) / 4000
            row = TrialResult(**ids, trial_id=trial_id, iteration=config["iteration"], status="ok", top1_after=score,
                              started_at=now, finished_at=now, **strategy_columns(strategy))
            return {**config, "index": self.count, "seconds": spec["seconds"], "work": spec["work"],
                    "imports": spec["imports"], "row_json": row_json(row)}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            super().on_trial_complete(trial_id, result, error)
            self.errors += int(error or result is None)
            if result is not None and not error:
                self.results.append(result)

    return BenchMasterSearcher()


def synthetic_trial(config: dict) -> None:
    """The function trainable: the work, then one report shaped like the real trial's."""
    from ray import tune

    start, end, pid, born = do_work(config["seconds"], config["work"], config["imports"])
    tune.report({"score": float(config["index"]), "row_json": config["row_json"], "work_start": start,
                 "work_end": end, "pid": pid, "process_start": born})


def run_tune(spec: dict) -> dict:
    import ray

    from multi_agent_pruning.config import load_config_dict
    from multi_agent_pruning.orchestrator import tune_run as search_module
    from multi_agent_pruning.orchestrator.ray_runtime import init_ray
    from multi_agent_pruning.orchestrator.tune_run import build_tuner, concurrency

    if os.environ.get("MAPR_BENCH_KEEP_TUNE_ACTOR_ENV"):
        search_module.use_prestarted_workers = lambda: False
    tmp = tempfile.mkdtemp(prefix="mapr-ovh-")
    cfg = load_config_dict({"hardware": {"device": "cpu", "num_cpus": spec["k"], "cpus_per_trial": 1},
                            "ray": {"temp_dir": os.path.join(tmp, "ray"),
                                    **_preload_setting(os.environ.get("MAPR_BENCH_PRELOAD")),
                                    **({"idle_worker_keep_s": None}
                                       if os.environ.get("MAPR_BENCH_RAY_IDLE_TIMEOUT") else {})},
                            "search": {"trials": spec["trials"], "reuse_actors": spec["reuse"]}})
    init_ray(cfg)
    k = concurrency(cfg)
    settle, settle_cpu = wait_for_idle_workers(k, spec.get("settle", 0.0))
    time.sleep(spec.get("pause", 0.0))  # the profiling of a real search: the workers idle meanwhile
    row = _synthetic_row("synthetic")
    configs = [{"index": i, "seconds": spec["seconds"], "work": spec["work"], "imports": spec["imports"],
                "row_json": row} for i in range(spec["trials"])]
    if spec.get("searcher", "fixed") == "master":
        searcher = _master_searcher(spec, k)
    else:
        searcher = _searcher_class()(configs)
    tuner = build_tuner(cfg, synthetic_trial, searcher, budget=spec["trials"], parallel=k, name="overhead",
                        storage=os.path.join(tmp, "tune"))
    with ProcessTreeCPU() as cpu:
        t0 = time.time()
        tuner.fit()
        t1 = time.time()
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    spans = [(r["work_start"], r["work_end"], r["pid"], r["process_start"]) for r in searcher.results]
    return {"t0": t0, "t1": t1, "spans": spans, "k": k, "errors": searcher.errors, "cpu": cpu.totals(),
            "settle_s": settle, "settle_cpu_s": settle_cpu, "actor_start_s": getattr(searcher, "actor_start_s", None)}


def _preload_setting(flag: str | None) -> dict:
    """The ``preload``/``no_preload`` variants' ``ray`` config; nothing for the others (the default)."""
    if flag is None:
        return {}
    return {"preload_modules": ["ray.tune"] if flag == "1" else []}


def wait_for_idle_workers(k: int, limit: float) -> tuple[float | None, float | None]:
    """With ``--settle``: wait (at most ``limit`` s) until this process's Ray has ``k`` idle worker
    processes (``ray::IDLE``, the ones Ray prestarts at ``ray.init``) whose CPU time has stopped
    growing (less than 0.02 s over 0.25 s: their start-up imports, preloaded modules included, are
    done), i.e. until Ray is fully up before W starts, as it is in a real search, where profiling
    runs first. Returns the seconds waited and those workers' CPU seconds, or (None, None) when
    not asked."""
    if limit <= 0:
        return None, None
    import psutil  # ships with Ray (ray/thirdparty_files)

    from multi_agent_pruning.testing.ray_workers import (
        idle_worker_processes as idle_workers,
    )

    def cpu_of(procs: list) -> float:
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    start = time.time()
    last = None
    while time.time() - start < limit:
        procs = idle_workers()
        if len(procs) >= k:
            used = cpu_of(procs)
            if last is not None and used - last < 0.02:
                return round(time.time() - start, 2), round(used, 2)
            last = used
            time.sleep(0.25)
        else:
            time.sleep(0.05)
    procs = idle_workers()
    return round(time.time() - start, 2), round(cpu_of(procs), 2)


def run_master(spec: dict) -> dict:
    """Median seconds of one MasterAgent.execute + AnalysisAgent.execute on a TinyResNet profile."""
    from multi_agent_pruning.agents import AnalysisAgent, MasterAgent

    profile = _tiny_profile()
    master, analysis = MasterAgent({"batch_size": 8, "max_iterations": 100}), AnalysisAgent({})
    seconds = []
    for iteration in range(spec["repeats"]):
        start = time.perf_counter()
        proposal = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": [],
                                   "revision_number": iteration, "batch_size": 8})
        analysis.execute({"profile_results": profile, "strategies": proposal["strategies"],
                          "target": {"kind": "macs", "reduction": 0.5, "budget": None}})
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "runs": seconds, "strategies": len(proposal["strategies"])}


def run_import(spec: dict) -> dict:
    start = time.perf_counter()
    importlib.import_module(REAL_TRIAL_MODULE)
    return {"seconds": time.perf_counter() - start}


RUNNERS = {"pool": run_pool, "tune": run_tune, "master": run_master, "import": run_import}


def summarise(raw: dict, spec: dict) -> dict:
    """W, ideal, overhead per trial, efficiency and where the idle time went."""
    n, t, k = spec["trials"], spec["seconds"], raw["k"]
    if len(raw["spans"]) != n or raw.get("errors"):
        raise RuntimeError(f"{len(raw['spans'])} of {n} trials reported ({raw.get('errors', 0)} errors)")
    wall, ideal = raw["t1"] - raw["t0"], n * t / k
    starts = sorted(span[0] for span in raw["spans"])
    ends = sorted(span[1] for span in raw["spans"])
    gaps = [starts[i] - ends[i - k] for i in range(k, n)]
    first_start: dict[int, float] = {}
    born: dict[int, float] = {}
    for start, _, pid, process_start in raw["spans"]:
        first_start[pid] = min(first_start.get(pid, start), start)
        born[pid] = process_start
    # From the later of (process start, W start) to the process's first trial: imports and set-up.
    boots = [first_start[pid] - max(born[pid], raw["t0"]) for pid in first_start]
    return {"k": k, "wall_s": wall, "ideal_s": ideal, "overhead_per_trial_s": (wall - ideal) * k / n,
            "efficiency": ideal / wall, "head_s": starts[0] - raw["t0"], "tail_s": raw["t1"] - ends[-1],
            "gap_median_s": statistics.median(gaps) if gaps else None, "gap_max_s": max(gaps) if gaps else None,
            "span_mean_s": statistics.fmean(span[1] - span[0] for span in raw["spans"]),
            "processes": len(first_start), "processes_started_before_w": sum(b < raw["t0"] for b in born.values()),
            "process_boot_median_s": statistics.median(boots), "settle_s": raw.get("settle_s"),
            "settle_cpu_s": raw.get("settle_cpu_s"),
            "actor_start_s": raw.get("actor_start_s"),
            **{f"cpu_{kind}_s": seconds for kind, seconds in raw["cpu"].items()}}


def wait_for_load(max_load: float | None, max_wait_s: float) -> float:
    """Waits until the 1-minute load average is below ``max_load`` (at most ``max_wait_s``); returns it."""
    deadline = time.monotonic() + max_wait_s
    while max_load is not None and os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def run_child(spec: dict, max_load: float | None = None, max_wait_s: float = 0.0) -> dict:
    """Runs one spec in a fresh interpreter with the variant's environment."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           **VARIANTS.get(spec.get("variant", "default"), {})}
    env = {key: value for key, value in env.items() if value is not None}
    load_before = wait_for_load(max_load, max_wait_s)
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                          text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"run {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    raw = json.loads(lines[-1][len(RESULT_PREFIX):])
    out = summarise(raw, spec) if spec["runner"] in ("pool", "tune") else raw
    return {**spec, **out, "load_1m_before": load_before, "load_1m_after": os.getloadavg()[0]}


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    versions = {name: metadata.version(name) for name in ("ray", "torch")}
    return {"cpu": cpu, "cores": os.cpu_count(), **versions, "python": platform.python_version(),
            "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_avg": list(os.getloadavg())}


HEADER = (f"{'t s':>5} {'work':>5} {'runner':>18} {'variant':>15} {'W s':>7} {'ideal':>6} {'ovh/trial':>9} "
          f"{'eff':>5} {'head':>5} {'gap':>5} {'tail':>5} {'span':>5} {'procs':>5} {'boot':>5} {'cpu drv':>7} "
          f"{'daemons':>7} {'workers':>7} {'load 1m':>9}")


def print_rows(rows: list[dict]) -> None:
    """The measured runs, one line each (the table's header is HEADER)."""
    for r in rows:
        runner = r["runner"] if r["runner"] == "pool" else f"tune reuse={r['reuse']}"
        if r.get("searcher", "fixed") == "master":
            runner = f"master reuse={r['reuse']}"
        gap = f"{r['gap_median_s']:5.2f}" if r["gap_median_s"] is not None else "    -"
        print(f"{r['seconds']:5.1f} {r['work']:>5} {runner:>18} {r.get('variant', '-'):>15} {r['wall_s']:7.2f} "
              f"{r['ideal_s']:6.1f} {r['overhead_per_trial_s']:9.3f} {r['efficiency']:5.3f} {r['head_s']:5.2f} "
              f"{gap} {r['tail_s']:5.2f} {r['span_mean_s']:5.2f} {r['processes']:5d} {r['process_boot_median_s']:5.2f} "
              f"{r['cpu_driver_s']:7.1f} {r['cpu_ray_daemons_s']:7.1f} "
              f"{r['cpu_workers_s']:7.1f} {r['load_1m_before']:4.1f}>{r['load_1m_after']:<4.1f}")
        if r.get("actor_start_s") is not None:
            print(f"{'':>5} master and analysis actors started in {r['actor_start_s']:.2f} s (before W, not in it)")


def plan(args: argparse.Namespace) -> list[dict]:
    reuse = {"both": [True, False], "true": [True], "false": [False]}[args.reuse]
    specs = []
    for seconds in [s for _ in range(args.repeats) for s in args.seconds]:
        for work in args.work:
            base = {"trials": args.trials, "seconds": seconds, "work": work, "k": args.k,
                    "imports": args.imports == "trial", "settle": args.settle, "pause": args.pause}
            if not args.no_pool:
                specs.append({**base, "runner": "pool"})
            specs += [{**base, "runner": "tune", "reuse": r, "variant": v, "searcher": searcher}
                      for searcher in args.searchers for v in args.variants for r in reuse]
    return specs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16, help="N trials per run")
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0], help="work per trial (several allowed)")
    parser.add_argument("--work", nargs="+", choices=("cpu", "sleep"), default=["cpu"])
    parser.add_argument("--k", type=int, default=2, help="CPUs given to Ray and the pool = concurrent trials")
    parser.add_argument("--reuse", choices=("both", "true", "false"), default="both", help="search.reuse_actors")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["default"],
                        help="Tune environment settings to measure")
    parser.add_argument("--searchers", nargs="+", choices=("fixed", "master"), default=["fixed"],
                        help="'fixed': hands out N configs; 'master': the real MasterSearcher with the master "
                             "and analysis actors (batches of k, pipelined), the search path of multi_agent")
    parser.add_argument("--imports", choices=("none", "trial"), default="none",
                        help=f"'trial': each worker process imports {REAL_TRIAL_MODULE} like the real trainable")
    parser.add_argument("--repeats", type=int, default=1, help="run the whole plan this many times, interleaved")
    parser.add_argument("--max-load", type=float, help="before each run, wait until the 1-min load is below this")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for --max-load, seconds")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="after settling, wait this many seconds more before W (a real search's profiling)")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="before W, wait up to this many seconds for Ray's k prestarted idle workers")
    parser.add_argument("--no-pool", action="store_true", help="skip the multiprocessing.Pool runs")
    parser.add_argument("--master", action="store_true", help="also time the master + analysis proposal")
    parser.add_argument("--json", help="write numbers and machine info here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def save(path: str | None, info: dict, rows: list[dict], extra: dict) -> None:
    """Writes what was measured so far (after every run, so an interrupted benchmark keeps its rows)."""
    if path:
        info = {**info, "load_avg_after": list(os.getloadavg())}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"machine": info, "argv": sys.argv[1:], "runs": rows, **extra}, handle, indent=2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(RESULT_PREFIX + json.dumps(RUNNERS[spec["runner"]](spec)), flush=True)
        return 0
    info, rows, extra = machine_info(), [], {}
    print(HEADER, flush=True)
    for spec in plan(args):
        rows.append(run_child(spec, args.max_load, args.max_wait))
        print_rows(rows[-1:])
        sys.stdout.flush()
        save(args.json, info, rows, extra)
    extra["trial_module_import"] = run_child({"runner": "import"})
    print(f"fresh-process import of {REAL_TRIAL_MODULE}: {extra['trial_module_import']['seconds']:.2f} s")
    if args.master:
        extra["master_proposal"] = run_child({"runner": "master", "repeats": 5})
        print(f"master + analysis proposal of 8 strategies (median of 5): {extra['master_proposal']['median_s']:.3f} s")
    save(args.json, info, rows, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
