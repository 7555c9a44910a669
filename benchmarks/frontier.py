"""Accuracy-MACs frontier: every method over a sweep of targets at the same total trial budget.

Runs ``compare_methods`` with ``target.sweep`` (default: 50, 70, 80 and 90 % of the MACs
removed) on the four settings of ``search_quality.py`` (digits and Fashion-MNIST, compact CNN and
DeiT-micro, dense models trained here and cached): ``multi_agent`` searches all targets in one
search, ``optuna_tpe`` and each baseline run one study per target with the budget split evenly.
Then, for the same seeds, ``multi_agent`` again as one single-target search per target with the
same split of the budget: does searching the targets together give a better frontier than
searching them apart? Every number comes from the result tables
(``multi_agent_pruning.stats.frontier``): per setting and method the frontier area (mean +- std
over seeds), the best top-1 per target (mean over seeds) and the paired tests of the area against
multi_agent; joint against separate: the area of each and their difference per seed.

    python benchmarks/frontier.py --quick     # digits + CNN, 1 seed, 8 trials, 3 methods: minutes
    python benchmarks/frontier.py             # full: 4 settings x 6 methods x 16 trials x 3 seeds
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from multi_agent_pruning.results import target_key
from multi_agent_pruning.stats.frontier import analyze_frontier

REFERENCE = "multi_agent"
FULL_METHODS = ["multi_agent", "optuna_tpe", "magnitude_l1", "magnitude_l2", "taylor", "isomorphic"]
QUICK_METHODS = ["multi_agent", "optuna_tpe", "magnitude_l2"]
DEFAULT_TARGETS = "0.5,0.7,0.8,0.9"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def _load_search_quality():
    """``search_quality.py``, loaded by path (``benchmarks/`` is no package): its SETTINGS and
    ``machine()`` are this benchmark's too."""
    spec = importlib.util.spec_from_file_location("search_quality", Path(__file__).with_name("search_quality.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


search_quality = _load_search_quality()
SETTINGS = search_quality.SETTINGS


@dataclass(frozen=True)
class Plan:
    """What one invocation runs, with the defaults of ``--quick`` or of the full run filled in."""

    settings: list[str]
    methods: list[str]
    targets: list[float]
    trials: int
    seeds: int
    finetune_steps: int
    overrides: list[str]
    verbose: bool


def parse_targets(text: str) -> list[float]:
    """``"0.5,0.7"`` -> ``[0.5, 0.7]``: at least two distinct fractions of the MACs removed, in (0, 1)."""
    try:
        values = sorted(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if len(values) < 2 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"need at least two distinct targets, got {text!r}")
    if not all(0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"targets are fractions of the MACs removed, in (0, 1); got {text!r}")
    return values


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="CI smoke: digits-cnn, 1 seed, 8 trials, methods " + ",".join(QUICK_METHODS))
    p.add_argument("--settings", default=None, help=f"comma-separated subset of {','.join(SETTINGS)}")
    p.add_argument("--methods", default=None, help=f"comma-separated methods (default {','.join(FULL_METHODS)})")
    p.add_argument("--targets", type=parse_targets, default=parse_targets(DEFAULT_TARGETS),
                   help=f"fractions of the MACs removed, searched as one sweep ({DEFAULT_TARGETS})")
    p.add_argument("--trials", type=int, default=None,
                   help="trials per method and seed over all targets (16; quick: 8); the methods that "
                        "search one target at a time, and the separate multi_agent searches, split them evenly")
    p.add_argument("--seeds", type=int, default=None, help="runs per method, seeds experiment.seed + run (3; quick: 1)")
    p.add_argument("--finetune-steps", type=int, default=None, help="fine-tune steps per trial (15; quick: 20)")
    p.add_argument("--output", default="runs/bench/frontier", help="output directory (a timestamped folder in it)")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every search, e.g. search.reproducible=false")
    p.add_argument("--same-as", default=None, metavar="DIR",
                   help="an earlier output of this script (the timestamped folder) with the same settings and "
                        "seeds: say which searches (joint, per method and run, and each separate search) gave "
                        "the same trials, to show that a refactor changed nothing")
    p.add_argument("--verbose", action="store_true", help="INFO logging and one line per trial")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    settings = search_quality.chosen_settings(args.settings, args.quick, "frontier")
    trials = args.trials or (8 if args.quick else 16)
    if trials < len(args.targets):
        raise SystemExit(f"frontier: --trials {trials} is below the number of targets ({len(args.targets)}): "
                         f"every method must try each target")
    seeds = args.seeds or (1 if args.quick else 3)
    steps = args.finetune_steps or (20 if args.quick else 15)
    methods = args.methods.split(",") if args.methods else (QUICK_METHODS if args.quick else FULL_METHODS)
    return Plan(settings=settings, methods=methods, targets=list(args.targets), trials=trials, seeds=seeds,
                finetune_steps=steps, overrides=list(args.set), verbose=args.verbose)


def setting_overrides(name: str, plan: Plan) -> list[str]:
    """The overrides of ``configs/quickstart.yaml`` shared by the joint and the separate searches,
    before the target's; the quickstart is itself a sweep with raised limits, so all are explicit."""
    spec = SETTINGS[name]
    limit = max(0.9, max(plan.targets))
    return [f"model.name={spec['model']}", f"dataset.name={spec['dataset']}",
            f"model.train_steps={spec['train_steps']}", "target.budget=null", f"finetune.steps={plan.finetune_steps}",
            "evaluation.latency=false", "search.convergence_threshold=0",
            "agents.profiling_agent.calibration_batches=1",
            f"safety_limits.max_overall_pruning={limit}", f"safety_limits.max_conv_pruning={limit}"]


def target_overrides(targets: list[float], trials: int) -> list[str]:
    """A sweep for more than one target, else one target; rounds enough for the budget at two
    trials a round (as search_quality)."""
    rounds = f"search.max_iterations={max(2, trials // 2)}"
    if len(targets) == 1:
        return [f"target.reduction={targets[0]}", "target.sweep=null", rounds]
    return [f"target.sweep=[{', '.join(str(t) for t in targets)}]", "target.reduction=null", rounds]


def build_config(name: str, plan: Plan, experiment: str, targets: list[float], trials: int):
    from multi_agent_pruning.config import load_config

    spec = SETTINGS[name]
    return load_config(CONFIG, overrides=[f"experiment.name={experiment}", *setting_overrides(name, plan),
                                          *target_overrides(targets, trials), *spec.get("extra", []),
                                          *plan.overrides])


def target_labels(kind: str, targets: list[float]) -> list[str]:
    """The labels the result table gives these targets (``remove 50% of MACs``), easiest first."""
    return [target_key(kind, t, None).label for t in targets]


def rows_of(frame: Any, method: str) -> pd.DataFrame:
    frame = frame.to_pandas() if hasattr(frame, "to_pandas") and not isinstance(frame, pd.DataFrame) else frame
    return frame[frame["method"] == method]


def combine_searches(joint: Any, separate: list[Any], method: str = REFERENCE) -> pd.DataFrame:
    """``method``'s rows of the joint sweep (``search="joint"``) and of every separate single-target
    search (``search="separate"``) in one frame. ``frontier_points(frame, group="search")`` then
    takes the best row per (search, run, target): the separate searches of one seed become one
    frontier, comparable with the joint one."""
    parts = [rows_of(joint, method).assign(search="joint")]
    parts += [rows_of(frame, method).assign(search="separate") for frame in separate]
    parts = [part for part in parts if len(part)]
    if not parts:
        raise ValueError(f"no rows of {method} in the joint or the separate searches")
    return pd.concat(parts, ignore_index=True)


def seeds_by_run(frame: pd.DataFrame) -> dict[int, int]:
    """The seed of each run, from the table; a run with two seeds is an error."""
    seeds = frame.groupby("run")["seed"].unique()
    mixed = {int(run): sorted(int(s) for s in values) for run, values in seeds.items() if len(values) > 1}
    if mixed:
        raise ValueError(f"runs with more than one seed: {mixed}")
    return {int(run): int(values[0]) for run, values in seeds.items()}


def joint_vs_separate(joint: Any, separate: list[Any], labels: list[str], method: str = REFERENCE) -> dict:
    """Frontier of ``method``'s joint sweep against its separate single-target searches, paired on
    the run (seed): area mean +- std of each, best top-1 per target, the difference joint - separate
    per seed and the paired tests of it.

    Raises:
        ValueError: A run's seed differs between the joint and the separate searches (they would
            not be paired), or ``method`` has no rows at all.
    """
    combined = combine_searches(joint, separate, method)
    seeds = {search: seeds_by_run(part) for search, part in combined.groupby("search")}
    both = set(seeds.get("joint", {})) & set(seeds.get("separate", {}))
    differing = {run: (seeds["joint"][run], seeds["separate"][run]) for run in sorted(both)
                 if seeds["joint"][run] != seeds["separate"][run]}
    if differing:
        raise ValueError(f"joint and separate searches of a run used different seeds (run: (joint, separate)): "
                         f"{differing}")
    report = analyze_frontier(combined, reference="separate", group="search")
    areas = {search: report.areas.get(search) for search in ("joint", "separate")}
    per_run = {search: (areas[search] or {}).get("per_run", {}) for search in areas}
    seed_of = {**seeds.get("separate", {}), **seeds.get("joint", {})}
    per_seed = []
    for run in sorted(seed_of):
        a, b = per_run["joint"].get(run), per_run["separate"].get(run)
        per_seed.append({"run": run, "seed": seed_of[run], "joint": a, "separate": b,
                         "difference": None if a is None or b is None else a - b})
    differences = [s["difference"] for s in per_seed if s["difference"] is not None]
    tests = report.area_statistics.to_dict()["comparisons"]
    return {"joint": areas["joint"], "separate": areas["separate"],
            "per_target": {label: {search: report.per_target.get(label, {}).get(search) for search in areas}
                           for label in labels},
            "per_seed": per_seed,
            "mean_difference": sum(differences) / len(differences) if differences else None,
            "test": tests[0] if tests else None}


def method_summary(frame: Any, methods: list[str], labels: list[str]) -> dict:
    """Per method, from the joint table: frontier area, best top-1 per target and the paired tests
    of the area against multi_agent (or the first method when multi_agent did not run)."""
    frame = frame.to_pandas() if hasattr(frame, "to_pandas") and not isinstance(frame, pd.DataFrame) else frame
    reference = REFERENCE if REFERENCE in methods else methods[0]
    report = analyze_frontier(frame[frame["method"].isin(methods)], reference=reference)
    tests = {c["method"]: c for c in report.area_statistics.to_dict()["comparisons"]}
    out = {m: {"area": report.areas.get(m),
               "per_target": {label: report.per_target.get(label, {}).get(m) for label in labels},
               "vs_reference": tests.get(m)} for m in methods}
    return {"reference": report.area_statistics.reference, "methods": out, "frontier": report.to_dict()}


def _num(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _area_cell(area: dict | None) -> str:
    if not area:
        return "-"
    return f"{_num(area['mean'])} ± {_num(area['std'])}" + (f" (n={area['n_runs']})" if area["n_runs"] else "")


def _p_cell(test: dict | None) -> str:
    if not test:
        return "-"
    return f"{_num(test['wilcoxon_p_holm'], '.3f')} / {_num(test['t_p_holm'], '.3f')}"


def format_methods(setting: str, summary: dict, labels: list[str], headers: list[str],
                   walls: dict[str, float | None] | None = None) -> list[str]:
    """One line per method: area mean ± std, the mean best top-1 per target, the paired
    difference of the area to the reference and its Holm-adjusted Wilcoxon / t p-values."""
    reference = summary["reference"]
    lines = [f"{'setting':<12} {'method':<13} {'area mean ± std (n)':<24}" + "".join(f" {h:>7}" for h in headers)
             + f" {'Δ area':>8}  {'p vs ' + str(reference) + ' (Wilcoxon / t, Holm)':<40} {'wall s':>7}"]
    ranked = sorted(summary["methods"].items(), key=lambda kv: -((kv[1]["area"] or {}).get("mean") or -1.0))
    for method, entry in ranked:
        cells = "".join(f" {_num((entry['per_target'].get(label) or {}).get('mean')):>7}" for label in labels)
        test = entry["vs_reference"]
        delta = _num(test["mean_difference"], "+.4f") if test else ("ref" if method == reference else "-")
        wall = (walls or {}).get(method)
        lines.append(f"{setting:<12} {method:<13} {_area_cell(entry['area']):<24}{cells} {delta:>8}  "
                     f"{_p_cell(test) if test else '':<40} {_num(wall, '.0f'):>7}")
    return lines


def format_joint_vs_separate(setting: str, versus: dict, labels: list[str], headers: list[str]) -> list[str]:
    """Joint and separate multi_agent frontiers, then the difference per seed and its tests."""
    lines = [f"{'setting':<12} {'multi_agent':<13} {'area mean ± std (n)':<24}" + "".join(f" {h:>7}" for h in headers)]
    for search in ("joint", "separate"):
        cells = "".join(f" {_num(((versus['per_target'].get(label) or {}).get(search) or {}).get('mean')):>7}"
                        for label in labels)
        lines.append(f"{setting:<12} {search:<13} {_area_cell(versus[search]):<24}{cells}")
    seeds = ", ".join(f"seed {s['seed']}: {_num(s['difference'], '+.4f')}" for s in versus["per_seed"])
    lines.append(f"{'':<12} joint - separate per seed: {seeds or '-'}; mean {_num(versus['mean_difference'], '+.4f')}"
                 f"; p (Wilcoxon / t) {_p_cell(versus['test'])}")
    return lines


def target_headers(targets: list[float]) -> list[str]:
    return [f"-{100 * t:g}%" for t in targets]


class Progress:
    """One line per phase on stderr, with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        minutes, seconds = divmod(int(time.perf_counter() - self.start), 60)
        print(f"[frontier {minutes:d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


def run_joint(name: str, plan: Plan, out: Path, phase: Progress) -> tuple[dict, pd.DataFrame, float]:
    from multi_agent_pruning.orchestrator.compare import compare_methods  # Ray and torch: not for --help
    from multi_agent_pruning.results import ResultStore

    cfg = build_config(name, plan, f"fr-{name}", plan.targets, plan.trials)
    phase(f"{name}: joint {cfg.target.describe()}: {', '.join(plan.methods)} x {plan.seeds} seed(s) x "
          f"{plan.trials} trials")
    start = time.perf_counter()
    comparison = compare_methods(cfg, plan.methods, num_runs=plan.seeds, trials_per_method=plan.trials,
                                 output_dir=out, progress=plan.verbose)
    return comparison, ResultStore(out / "results").read().to_pandas(), time.perf_counter() - start


def run_separate(name: str, plan: Plan, out: Path, phase: Progress) -> tuple[list[pd.DataFrame], float, dict]:
    """multi_agent once per target, alone, with the share of the budget the split methods get and
    the joint run's seeds (compare_methods: experiment.seed + run)."""
    from multi_agent_pruning.exceptions import PruningError
    from multi_agent_pruning.orchestrator.compare import compare_methods, split_budget
    from multi_agent_pruning.results import ResultStore

    frames, failures, start = [], {}, time.perf_counter()
    for target, share in zip(plan.targets, split_budget(plan.trials, len(plan.targets))):
        cfg = build_config(name, plan, f"fr-{name}-separate", [target], share)
        where = out / target_key(cfg.target.kind, target, None).slug
        phase(f"{name}: separate multi_agent search, {cfg.target.describe()}: {plan.seeds} seed(s) x {share} trials")
        try:
            compare_methods(cfg, [REFERENCE], num_runs=plan.seeds, trials_per_method=share, output_dir=where,
                            progress=plan.verbose)
        except PruningError as err:  # no model at this target: its rows are stored, the frontier lacks it
            failures[target] = str(err)
            logging.getLogger(__name__).warning("separate search at %s produced no model: %s", target, err)
        frames.append(ResultStore(where / "results").read().to_pandas())
    return frames, time.perf_counter() - start, failures


def run_setting(name: str, plan: Plan, out: Path, phase: Progress) -> dict:
    spec = SETTINGS[name]
    labels, headers = target_labels("macs", plan.targets), target_headers(plan.targets)
    comparison, joint, joint_wall = run_joint(name, plan, out / name / "joint", phase)
    summary = method_summary(joint, plan.methods, labels)
    walls = {m: c.get("wall_time_s") for m, c in comparison.items()}
    separate, separate_wall, failures = run_separate(name, plan, out / name / "separate", phase)
    versus = joint_vs_separate(joint, separate, labels)
    print(f"\n== {name}: {spec['model']} on {spec['dataset']}, targets {', '.join(headers)} of MACs, "
          f"{plan.trials} trials per method and seed, {plan.seeds} seed(s), {plan.finetune_steps} fine-tune steps ==")
    print("\n".join(format_methods(name, summary, labels, headers, walls)))
    print(f"\njoint sweep vs {len(plan.targets)} separate searches ({plan.trials} trials per seed either way):")
    print("\n".join(format_joint_vs_separate(name, versus, labels, headers)))
    report = out / name / "joint" / "report.html"
    print(f"wall time: joint {joint_wall / 60:.1f} min, separate {separate_wall / 60:.1f} min"
          + (f"; report {report}" if report.exists() else ""))
    return {"setting": name, **spec, "targets": plan.targets, "target_labels": labels, "methods": plan.methods,
            "trials": plan.trials, "seeds": plan.seeds, "finetune_steps": plan.finetune_steps,
            "summary": summary, "joint_vs_separate": versus, "separate_failures": failures,
            "comparison": comparison, "wall_minutes": {"joint": joint_wall / 60, "separate": separate_wall / 60},
            "report": str(report) if report.exists() else None}


def same_as(earlier: Path, later: Path, setting: str) -> dict:
    """Per search of ``setting`` in both outputs (the joint comparison, then each separate
    search): per method and run, ``identical`` or how many trials differ (strategy, status and
    top-1, in issue order; ``search_quality.same_as``)."""
    verdict = {"joint": search_quality.same_as(earlier / setting, later / setting, "joint")}
    separate = later / setting / "separate"
    for where in sorted(p for p in separate.iterdir() if p.is_dir()) if separate.is_dir() else []:
        if (earlier / setting / "separate" / where.name / "results").is_dir():
            verdict[f"separate {where.name}"] = search_quality.same_as(earlier / setting / "separate", separate,
                                                                       where.name)
    return verdict


def format_same_as(earlier: str, verdict: dict) -> list[str]:
    return [line for search, methods in verdict.items()
            for line in search_quality.format_same_as(earlier, methods, search)]


def machine(device: str) -> dict:
    """search_quality's record (CPU, cores, Python, load, date, commit) with the GPU and the device
    the trials ran on, and whether the working tree had uncommitted changes."""
    import torch

    info = search_quality.machine()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return {**info, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "trial_device": device, "torch": torch.__version__, "uncommitted_changes": bool(dirty)}


def format_machine(info: dict, command: str) -> str:
    return (f"command: {command}\nmachine: {info['cpu']}, {info['cores']} cores, GPU {info['gpu']} "
            f"(trials on {info['trial_device']}); Python {info['python']}, torch {info['torch']}\n"
            f"date {info['date']}, commit {info['commit'] or '-'}"
            + (" (with uncommitted changes)" if info["uncommitted_changes"] else ""))


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    logging.basicConfig(level=logging.INFO if plan.verbose else logging.WARNING)
    if not plan.verbose:
        import optuna  # its own logger announces every study at INFO

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    phase = Progress()
    out = Path(args.output) / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    command = " ".join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])
    device = build_config(plan.settings[0], plan, "fr", plan.targets, plan.trials).hardware.device
    results = {"machine": machine(device), "command": command, "plan": asdict(plan), "settings": []}
    print(format_machine(results["machine"], command))
    for name in plan.settings:
        results["settings"].append(run_setting(name, plan, out, phase))
        if args.same_as:
            verdict = same_as(Path(args.same_as), out, name)
            results["settings"][-1]["same_as"] = {"earlier": args.same_as, "searches": verdict}
            print("\n".join(format_same_as(args.same_as, verdict)))
    if len(plan.settings) > 1:
        labels, headers = target_labels("macs", plan.targets), target_headers(plan.targets)
        print("\n== all settings ==")
        for index, s in enumerate(results["settings"]):
            lines = format_methods(s["setting"], s["summary"], labels, headers,
                                   {m: c.get("wall_time_s") for m, c in s["comparison"].items()})
            print("\n".join(lines if index == 0 else lines[1:]))
        for index, s in enumerate(results["settings"]):
            lines = format_joint_vs_separate(s["setting"], s["joint_vs_separate"], labels, headers)
            print("\n".join(lines if index == 0 else lines[1:]))
    results["machine"]["load_avg_after"] = os.getloadavg()
    results["wall_minutes"] = (time.perf_counter() - phase.start) / 60
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.json").write_text(json.dumps(results, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    phase(f"done in {results['wall_minutes']:.1f} min; numbers: {out / 'frontier.json'}")
    print(f"\nnumbers: {out / 'frontier.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
