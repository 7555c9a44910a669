"""Precision and cost of the pruning engine against one raw torch-pruning one-shot prune.

For each model (random init, 224 px, batch 1) this runs ``apply_strategy`` and a raw
torch-pruning prune at the pruning ratio the engine found, alternating them (engine, raw,
engine, raw, ...) so that machine noise hits both, and reports the MACs target, what the
engine achieved, the median wall times and the engine's per-stage split.

Both timings include the same work: a ``copy.deepcopy`` of the dense model (the engine copies
internally), building the pruner (graph tracing), importance, the prune itself, fixing timm
attention attributes and one final MACs count. The engine additionally searches the ratio;
that is the overhead this benchmark measures. One untimed engine run per model comes first:
it absorbs one-off warm-up costs and gives the ratio for the raw prune.

Usage:
    .venv/bin/python benchmarks/prune_engine.py --repeats 3 [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import time
import warnings
from collections import Counter
from importlib import metadata

import torch
import torch_pruning as tp

from multi_agent_pruning.core import Strategy, apply_strategy, create_importance
from multi_agent_pruning.core.graph import attention_heads, classifier_layers, update_attention_modules
from multi_agent_pruning.core.importance import needs_gradients, prepare_importance
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.models import create_model, get_model_spec

logger = logging.getLogger("benchmarks.prune_engine")

DEFAULT_MODELS = ("deit_small", "resnet50", "convnext_tiny")
ENGINE_STAGES = ("importance_gradients", "graph", "search", "prune", "count")
RAW_STAGES = ("copy", "importance", "pruner", "step", "count")


def machine_info() -> dict:
    """CPU model, core count, library versions and the UTC date of the run."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {name: metadata.version(name) for name in ("torch", "timm", "torch-pruning")}
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), **versions,
            "python": platform.python_version(), "git": _git_revision(),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _git_revision() -> str | None:
    """HEAD commit, with ``+dirty`` when tracked files differ from it; None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def calibration_batches(importance: str, seed: int) -> list | None:
    """Random labelled batches for gradient criteria (same for engine and raw); None otherwise."""
    if not needs_gradients(importance):
        return None
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 224, 224, generator=gen), torch.randint(0, 1000, (4,), generator=gen))
            for _ in range(2)]


def run_engine(model, strategy, x, calibration) -> tuple[float, object]:
    gc.collect()
    start = time.perf_counter()
    result = apply_strategy(model, strategy, x, calibration)
    return time.perf_counter() - start, result


def run_raw(model, strategy, x, calibration, ratio: float) -> tuple[float, dict, float]:
    """One torch-pruning one-shot prune at ``ratio``: (seconds, stage split, MACs after)."""
    gc.collect()
    split, clock = {}, time.perf_counter()
    start = clock

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        split[name], clock = now - clock, now

    work = copy.deepcopy(model)
    lap("copy")
    importance = create_importance(strategy.importance)
    prepare_importance(strategy.importance, importance, work, calibration, 4, x.device)
    lap("importance")
    pruner = tp.pruner.BasePruner(
        work, x, importance=importance, global_pruning=strategy.global_pruning, isomorphic=strategy.isomorphic,
        pruning_ratio=ratio, max_pruning_ratio=strategy.max_layer_pruning, ignored_layers=classifier_layers(work),
        round_to=strategy.round_to, num_heads=attention_heads(work), prune_num_heads=strategy.prune_num_heads,
        prune_head_dims=strategy.prune_head_dims, in_channel_groups={}, out_channel_groups={})
    lap("pruner")
    pruner.step()
    update_attention_modules(work, pruner.num_heads)
    lap("step")
    macs, _ = tp.utils.count_ops_and_params(work, x)
    lap("count")
    return time.perf_counter() - start, split, float(macs)


def common_ratio(ratios: dict[str, float]) -> float:
    """The ratio most scopes share (the engine refines at most one scope away from it)."""
    return Counter(round(r, 12) for r in ratios.values()).most_common(1)[0][0]


def bench_model(name: str, strategy: Strategy, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    calibration = calibration_batches(strategy.importance, seed)
    _, warm = run_engine(model, strategy, x, calibration)  # untimed: warm-up and the raw ratio
    ratio = common_ratio(warm.ratios)
    engine_s, raw_s, stages, raw_split, results, raw_macs = [], [], [], [], [], []
    for _ in range(repeats):
        seconds, result = run_engine(model, strategy, x, calibration)
        engine_s.append(seconds)
        results.append(result.summary())  # numbers only: pruned models are not kept alive
        stages.append(dict(result.timings, other=seconds - sum(result.timings.values())))
        seconds, split, macs = run_raw(model, strategy, x, calibration, ratio)
        raw_s.append(seconds)
        raw_split.append(split)
        raw_macs.append(macs)
    last = results[-1]
    engine, raw = statistics.median(engine_s), statistics.median(raw_s)
    return {
        "model": name, "base_macs": last["base_macs"], "target_macs": last["target"], "achieved_macs": last["macs"],
        "error": last["error"], "errors": [r["error"] for r in results], "attempts": [r["attempts"] for r in results],
        "ratio": ratio, "distinct_ratios": len({round(r, 12) for r in last["ratios"].values()}),
        "raw_macs": statistics.median(raw_macs),
        "raw_error": (statistics.median(raw_macs) - last["target"]) / last["target"],
        "engine_seconds": engine, "raw_seconds": raw, "engine_runs": engine_s, "raw_runs": raw_s,
        "engine_over_raw": engine / raw,
        "engine_stages": {k: statistics.median(s.get(k, 0.0) for s in stages) for k in (*ENGINE_STAGES, "other")},
        "raw_stages": {k: statistics.median(s[k] for s in raw_split) for k in RAW_STAGES},
        "time_goal_met": engine <= 2 * raw + 1.0, "error_goal_met": abs(last["error"]) <= 0.005,
    }


def format_tables(rows: list[dict]) -> str:
    head = (f"{'model':<14} {'target GMACs':>12} {'achieved':>9} {'error %':>8} {'engine s':>9} "
            f"{'raw s':>7} {'eng/raw':>7} {'<=2raw+1s':>9} {'|err|<=0.5%':>11} {'raw err %':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<14} {r['target_macs'] / 1e9:>12.4f} {r['achieved_macs'] / 1e9:>9.4f} "
            f"{100 * r['error']:>+8.3f} {r['engine_seconds']:>9.2f} {r['raw_seconds']:>7.2f} "
            f"{r['engine_over_raw']:>7.2f} {'yes' if r['time_goal_met'] else 'NO':>9} "
            f"{'yes' if r['error_goal_met'] else 'NO':>11} {100 * r['raw_error']:>+9.3f}")
    lines += ["", "engine stages, median seconds (other = deepcopy and retries outside the stages):"]
    lines.append(f"{'model':<14}" + "".join(f"{k:>21}" for k in (*ENGINE_STAGES, "other")))
    for r in rows:
        lines.append(f"{r['model']:<14}" + "".join(f"{r['engine_stages'][k]:>21.2f}" for k in (*ENGINE_STAGES, "other")))
    lines += ["", "raw torch-pruning stages, median seconds:"]
    lines.append(f"{'model':<14}" + "".join(f"{k:>12}" for k in RAW_STAGES))
    for r in rows:
        lines.append(f"{r['model']:<14}" + "".join(f"{r['raw_stages'][k]:>12.2f}" for k in RAW_STAGES))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registry names")
    parser.add_argument("--importance", default="l2", help="importance criterion (default l2)")
    parser.add_argument("--reduction", type=float, default=0.5, help="fraction of MACs to remove (default 0.5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed engine/raw pairs per model (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        for name in args.models:
            get_model_spec(name)
        args.strategy = Strategy(importance=args.importance, target_reduction=args.reduction)
    except ConfigurationError as err:  # unknown model or criterion, reduction outside (0, 1)
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", module=r"torch_pruning(\..*)?")
    strategy = args.strategy
    info = machine_info()
    info["load_average_before"] = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for name in args.models:
        logger.info("benchmarking %s", name)
        rows.append(bench_model(name, strategy, args.repeats, args.seed))
    info["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, timm {info['timm']}, "
          f"torch-pruning {info['torch-pruning']}, git {info['git']}, {info['date_utc']}")
    print(f"strategy: importance={args.importance}, target_reduction={args.reduction} (MACs), "
          f"max_layer_pruning={strategy.max_layer_pruning}, "
          f"repeats={args.repeats}; load average before {info['load_average_before']}, "
          f"after {info['load_average_after']}\n")
    print(format_tables(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": info, "strategy": strategy.to_dict(), "repeats": args.repeats, "models": rows},
                      handle, indent=2)


if __name__ == "__main__":
    main()
