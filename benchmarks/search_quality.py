"""Search quality: does the multi-agent search find better pruned models, sooner?

Runs ``compare_methods`` (one result table, same trial budget, seeds and fine-tune budget for
every method) on real data — scikit-learn digits and Fashion-MNIST (Debian package
``dataset-fashion-mnist``) — with models the script trains itself (cached), at an aggressive
target (80 % of the MACs removed, i.e. 20 % kept) and a short fine-tune. Prints and stores, per
setting: best top-1 mean +- std per method, the trials multi_agent needed to reach optuna_tpe's
final best, wall time, and the paired statistics; writes the HTML report.

    python benchmarks/search_quality.py --quick          # CI smoke: a few minutes
    python benchmarks/search_quality.py                  # full: 16 trials x 3 seeds x 7 methods
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

FULL_METHODS = ["multi_agent", "optuna_tpe", "magnitude_l1", "magnitude_l2", "taylor", "isomorphic", "random"]
QUICK_METHODS = ["multi_agent", "optuna_tpe", "taylor", "random"]

SETTINGS = {
    "digits-cnn": {"dataset": "digits", "model": "compact_cnn", "train_steps": 400},
    "digits-vit": {"dataset": "digits", "model": "deit_micro", "train_steps": 600},
    "fashion-cnn": {"dataset": "fashion_mnist", "model": "compact_cnn", "train_steps": 600,
                    "extra": ["dataset.train_samples=6000", "dataset.val_samples=2000"]},
    "fashion-vit": {"dataset": "fashion_mnist", "model": "deit_micro", "train_steps": 800,
                    "extra": ["dataset.train_samples=6000", "dataset.val_samples=2000"]},
}


def chosen_settings(text: str | None, quick: bool, script: str) -> list[str]:
    """The settings of ``--settings`` (comma-separated), else digits-cnn with ``--quick``, else all;
    an unknown name exits naming ``script`` and the known settings (frontier.py, fidelity.py)."""
    settings = text.split(",") if text else (["digits-cnn"] if quick else list(SETTINGS))
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"{script}: unknown setting(s) {','.join(unknown)}; known: {','.join(SETTINGS)}")
    return settings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI smoke: digits + CNN, 4 trials, 1 seed, 4 methods")
    p.add_argument("--settings", default=None, help=f"comma-separated subset of {','.join(SETTINGS)}")
    p.add_argument("--methods", default=None)
    p.add_argument("--trials", type=int, default=None, help="trial budget per method and run (16)")
    p.add_argument("--seeds", type=int, default=None, help="runs per method (3)")
    p.add_argument("--reduction", type=float, default=0.8, help="fraction of MACs removed (0.8 = 20 %% kept)")
    p.add_argument("--finetune-steps", type=int, default=None, help="fine-tune steps per trial (15; quick: 20)")
    p.add_argument("--output", default="runs/bench/search_quality", help="output directory")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every method, e.g. search.reproducible=false")
    p.add_argument("--reuse", default=None, metavar="DIR",
                   help="an earlier output (the timestamped folder) of the same settings and seeds: take the "
                        "methods other than multi_agent from it instead of rerunning them (with "
                        "search.reproducible they give the same rows again; --same-as checks it). Only "
                        "valid for methods whose code path did not change since")
    p.add_argument("--reuse-methods", default=None,
                   help="comma-separated methods to take from --reuse (default: all but multi_agent)")
    p.add_argument("--same-as", default=None,
                   help="an earlier run's output (the timestamped folder): say which searches gave the "
                        "same trials (strategy and accuracy, round by round)")
    return p.parse_args(argv)


def trials_to_reach(rows, method: str, reference: float | None, run: int) -> int | None:
    """1-based index of ``method``'s first trial scoring >= ``reference``, in the order the trials
    were issued: by ``iteration`` (Optuna's trial number; the master's round). The trials of one
    round of the master were proposed together from the same results, in no meaningful order, so
    within a round the ones that reach ``reference`` count last (conservative, and the same in
    every rerun; start times are not)."""
    if reference is None:
        return None

    def reached(row) -> bool:
        return row.status == "ok" and row.top1_after is not None and row.top1_after >= reference - 1e-12

    mine = sorted((r for r in rows if r.method == method and r.run == run and r.status != "rejected"),
                  key=lambda r: (r.iteration, reached(r), r.trial_id))
    for index, row in enumerate(mine, start=1):
        if reached(row):
            return index
    return None


def run_setting(name: str, args: argparse.Namespace, methods: list[str], out: Path) -> dict:
    from multi_agent_pruning.config import load_config
    from multi_agent_pruning.orchestrator.compare import compare_methods, format_comparison
    from multi_agent_pruning.results import ResultStore

    spec = SETTINGS[name]
    trials = args.trials or (4 if args.quick else 16)
    seeds = args.seeds or (1 if args.quick else 3)
    steps = args.finetune_steps or (20 if args.quick else 15)
    overrides = [
        f"experiment.name=sq-{name}", f"model.name={spec['model']}", f"dataset.name={spec['dataset']}",
        f"model.train_steps={spec['train_steps']}", f"target.reduction={args.reduction}", "target.budget=null",
        "target.sweep=null", "safety_limits.max_conv_pruning=0.9",  # the quickstart's sweep and its raised cap
        f"finetune.steps={steps}", "evaluation.latency=false", "search.convergence_threshold=0",
        f"search.max_iterations={max(2, trials // 2)}", "agents.profiling_agent.calibration_batches=1",
        "safety_limits.max_overall_pruning=0.9", *spec.get("extra", []), *args.set,
    ]
    cfg = load_config("configs/quickstart.yaml", overrides=overrides)
    reusable = args.reuse_methods.split(",") if args.reuse_methods else [m for m in methods if m != "multi_agent"]
    reused = [m for m in methods if m in reusable] if args.reuse else []
    start = time.perf_counter()
    comparison = compare_methods(cfg, [m for m in methods if m not in reused], num_runs=seeds,
                                 trials_per_method=trials, output_dir=out / name, progress=False)
    wall = time.perf_counter() - start
    if reused:
        comparison = reuse_methods(Path(args.reuse) / name, out / name, reused, methods, comparison, seeds)
    rows = ResultStore(out / name / "results").rows()
    reach = {}
    if "optuna_tpe" in comparison and "multi_agent" in comparison:
        for run in range(seeds):
            target = comparison["optuna_tpe"]["best_per_run"][run] if run < len(comparison["optuna_tpe"]["best_per_run"]) else None
            reach[run] = {"optuna_best": target,
                          "multi_agent_trials": trials_to_reach(rows, "multi_agent", target, run),
                          "optuna_trials": trials_to_reach(rows, "optuna_tpe", target, run)}
    stats = statistics_for(out / name / "results", methods)
    report = write_report(out / name)
    print(f"\n== {name}: {spec['model']} on {spec['dataset']}, {args.reduction:.0%} of MACs removed, "
          f"{trials} trials x {seeds} seeds, {steps} fine-tune steps ==")
    print(format_comparison(comparison))
    for run, r in reach.items():
        print(f"run {run}: optuna_tpe best {r['optuna_best']}, multi_agent reached it after "
              f"{r['multi_agent_trials']} trials (optuna_tpe after {r['optuna_trials']})")
    if stats:
        print(json.dumps(stats, indent=1, default=str)[:4000])
    print(f"wall time {wall / 60:.1f} min; report {report}")
    repeat = same_as(Path(args.same_as), out, name) if args.same_as else None
    if repeat is not None:
        print("\n".join(format_same_as(args.same_as, repeat)))
    return {"same_as": repeat, "reused": {"from": args.reuse, "methods": reused} if reused else None, "setting": name, **spec, "trials": trials, "seeds": seeds, "finetune_steps": steps,
            "reduction": args.reduction, "comparison": comparison, "reach": reach, "statistics": stats,
            "wall_minutes": wall / 60, "report": str(report) if report else None}


def reuse_methods(earlier: Path, here: Path, reused: list[str], methods: list[str], comparison: dict,
                  seeds: int) -> dict:
    """Adds ``reused`` methods' rows (runs < ``seeds``) from an earlier output to this one and
    returns the comparison of all ``methods`` (the reused ones keep their wall time). It replaces
    this output's ``comparison.json``, so a later ``--reuse`` of it finds every method."""
    from multi_agent_pruning.orchestrator.compare import summarise_comparison
    from multi_agent_pruning.utils.atomic import atomic_write_json
    from multi_agent_pruning.results import ResultStore

    store, old = ResultStore(here / "results"), ResultStore(earlier / "results")
    rows = [r for r in old.rows() if r.method in reused and r.run < seeds]
    missing = {(m, run) for m in reused for run in range(seeds)} - {(r.method, r.run) for r in rows}
    if missing:
        raise SystemExit(f"--reuse {earlier}: no rows for {sorted(missing)}")
    store.append(rows)
    before = json.loads((earlier / "comparison.json").read_text())
    walls = {m: (comparison.get(m) or before.get(m, {})).get("wall_time_s") for m in methods}
    comparison = summarise_comparison(store, rows[0].experiment, methods, walls)
    atomic_write_json(here / "comparison.json", comparison)
    return comparison


def searches(results: Path) -> dict[tuple, list]:
    """Per (method, run): its trials as (iteration, strategy, top-1) in a canonical order."""
    from multi_agent_pruning.results import ResultStore

    out: dict[tuple, list] = {}
    for r in ResultStore(results).rows():
        top1 = None if r.top1_after is None else round(r.top1_after, 6)
        out.setdefault((r.method, r.run), []).append((r.iteration, r.strategy_json, r.status, top1))
    return {key: sorted(trials) for key, trials in out.items()}


def same_as(earlier: Path, later: Path, setting: str) -> dict:
    """Which searches of ``setting`` are identical in two outputs of this script."""
    before, now = searches(earlier / setting / "results"), searches(later / setting / "results")
    verdict = {}
    for key in sorted(now):
        method, run = key
        if key not in before:
            continue
        differing = sum(1 for a, b in zip(before[key], now[key]) if a != b) + abs(len(before[key]) - len(now[key]))
        verdict.setdefault(method, {})[run] = "identical" if differing == 0 else f"{differing} trials differ"
    return verdict


def format_same_as(earlier: str, verdict: dict, search: str | None = None) -> list[str]:
    """One line per method of :func:`same_as`'s verdict (``search`` names the search, if several)."""
    where = f"{earlier}: {search}" if search else earlier
    return [f"same as {where}: {method} {sum(v == 'identical' for v in runs.values())} of {len(runs)} searches "
            f"identical {runs}" for method, runs in verdict.items()]


def statistics_for(results: Path, methods: list[str]):
    from multi_agent_pruning.results import ResultStore
    from multi_agent_pruning.stats.comparison import analyze_methods

    reference = "multi_agent" if "multi_agent" in methods else methods[0]
    return analyze_methods(ResultStore(results).to_pandas(), reference=reference).to_dict()


def write_report(directory: Path):
    from multi_agent_pruning.reports import write_report as write

    return write(directory / "results", directory / "report.html")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = os.getloadavg()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "load_avg": load,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    names = args.settings.split(",") if args.settings else (["digits-cnn"] if args.quick else list(SETTINGS))
    methods = args.methods.split(",") if args.methods else (QUICK_METHODS if args.quick else FULL_METHODS)
    out = Path(args.output) / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    results = {"machine": machine(), "command": " ".join([sys.executable, *sys.argv]), "settings": []}
    for name in names:
        results["settings"].append(run_setting(name, args, methods, out))
    results["machine"]["load_avg_after"] = os.getloadavg()
    (out / "search_quality.json").write_text(json.dumps(results, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nnumbers: {out / 'search_quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
