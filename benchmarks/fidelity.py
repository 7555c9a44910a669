"""Multi-fidelity search: FIFO against ASHA at equal and at half the fine-tune steps, then the
final recovery of each search's best strategy.

For each setting (search_quality.py's: digits and Fashion-MNIST, compact CNN and DeiT-micro)
and seed, three searches of the multi-agent method at one target (``--reduction``, 80 % of the
MACs removed by default), each its own ``mapruner prune`` run (``run_experiment``):

* ``fifo``: ``--trials`` strategies, each fine-tuned ``--finetune-steps`` steps once;
* ``asha``: as many strategies, with ``search.scheduler: asha`` (rungs 1x, 3x, 9x, reduction
  factor 3) from a base of ``ceil(finetune-steps / 3)`` steps: a rung-0 trial costs a third of a
  FIFO trial, a trial promoted to the last rung three FIFO trials. ASHA's promotions (a third at
  each rung, more among the first trials of a rung, which nothing earlier can stop) make the
  total about the FIFO search's;
* ``asha-half``: the same ASHA with half the strategies: about half the fine-tune steps.

The steps each search really spent are measured and printed (the sum of ``steps_trained``), so
"equal" and "half" are read from the table, not assumed.

Then the best strategy of each search (the summary's ranking) is recovered with the same
``mapruner finetune`` budget (``finetune_run(top_k=1, epochs=--recovery-epochs)``). Every
number comes from the run's result table: the fine-tune steps the search spent (the sum of
``steps_trained``), its best proxy accuracy (``top1_after`` of its best trial, after that
trial's own fine-tune: ASHA's best had 9 base budgets, so proxies are comparable only within
an arm), the recovered accuracy (the ``final`` row) and the gain of the recovery. On the CNN
settings the FIFO search also measures adaptive BatchNorm (``evaluation.adaptive_bn_batches``)
and the Kendall tau of ``top1_before`` and ``top1_adaptive_bn`` against ``top1_after``.

    python benchmarks/fidelity.py --quick      # digits-cnn, 1 seed, 8 trials: ~10 minutes
    python benchmarks/fidelity.py              # 4 settings x 3 seeds x 12 trials
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARMS = ("fifo", "asha", "asha-half")
#: Epochs of the final recovery per dataset: a few hundred steps (digits ~10 steps an epoch at
#: batch 128, Fashion-MNIST's 6000-image split ~47), far more than any search trial.
RECOVERY_EPOCHS = {"digits": 30, "fashion_mnist": 8}
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


search_quality = _load("search_quality")
SETTINGS = search_quality.SETTINGS


@dataclass(frozen=True)
class Plan:
    settings: list[str]
    trials: int
    seeds: int
    seed: int
    reduction: float
    finetune_steps: int
    recovery_epochs: int | None
    adaptive_bn_batches: int
    overrides: list[str]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="digits-cnn, 1 seed, 8 trials")
    p.add_argument("--settings", default=None, help=f"comma-separated subset of {','.join(SETTINGS)}")
    p.add_argument("--trials", type=int, default=None, help="strategies of the fifo and asha searches (12)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per setting (3)")
    p.add_argument("--seed", type=int, default=500, help="first seed (experiment.seed); then +1, +2")
    p.add_argument("--reduction", type=float, default=0.8, help="fraction of MACs removed")
    p.add_argument("--finetune-steps", type=int, default=15, help="fine-tune steps of a FIFO trial")
    p.add_argument("--recovery-epochs", type=int, default=None,
                   help="epochs of the final recovery (default per dataset: digits 30, Fashion-MNIST 8, a few "
                        "hundred steps either way)")
    p.add_argument("--adaptive-bn-batches", type=int, default=8, help="adaptive BN batches (CNN settings)")
    p.add_argument("--output", default="runs/bench/fidelity", help="output directory")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    settings = search_quality.chosen_settings(args.settings, args.quick, "fidelity")
    return Plan(settings=settings, trials=args.trials or (8 if args.quick else 12),
                seeds=args.seeds or (1 if args.quick else 3), seed=args.seed, reduction=args.reduction,
                finetune_steps=args.finetune_steps,
                recovery_epochs=args.recovery_epochs,
                adaptive_bn_batches=args.adaptive_bn_batches, overrides=list(args.set))


def asha_base_steps(finetune_steps: int) -> int:
    """Rung-0 steps of an ASHA trial: a third of a FIFO trial's (see the module docstring)."""
    return max(1, math.ceil(finetune_steps / 3))


def arm_overrides(arm: str, plan: Plan, setting: str) -> tuple[list[str], int]:
    """The arm's config overrides and its number of strategies."""
    if arm == "fifo":
        extra = [f"evaluation.adaptive_bn_batches={plan.adaptive_bn_batches}"] if "cnn" in setting else []
        return [f"finetune.steps={plan.finetune_steps}", "search.scheduler=fifo", *extra], plan.trials
    trials = plan.trials if arm == "asha" else max(2, plan.trials // 2)
    return [f"finetune.steps={asha_base_steps(plan.finetune_steps)}", "search.scheduler=asha", "search.rungs=3",
            "search.reduction_factor=3"], trials


def build_config(setting: str, arm: str, plan: Plan, seed: int):
    from multi_agent_pruning.config import load_config

    spec = SETTINGS[setting]
    overrides, trials = arm_overrides(arm, plan, setting)
    limit = max(0.9, plan.reduction)
    return load_config(CONFIG, overrides=[
        f"experiment.name=fid-{setting}-{arm}", f"experiment.seed={seed}", f"model.name={spec['model']}",
        f"dataset.name={spec['dataset']}", f"model.train_steps={spec['train_steps']}", "target.budget=null",
        "target.sweep=null", f"target.reduction={plan.reduction}", "evaluation.latency=false",
        "search.convergence_threshold=0", "agents.profiling_agent.calibration_batches=1",
        f"safety_limits.max_overall_pruning={limit}", f"safety_limits.max_conv_pruning={limit}",
        f"search.trials={trials}", "search.batch_size=2", f"search.max_iterations={max(2, trials // 2)}",
        *spec.get("extra", []), *overrides, *plan.overrides]), trials


def measure_run(out: Path) -> dict[str, Any]:
    """The numbers of one finished and recovered run, from its table."""
    import pandas as pd

    from multi_agent_pruning.results import ResultStore
    from multi_agent_pruning.stats.fidelity import signal_rankings

    store = ResultStore(out / "results")
    search = store.read().to_pandas()
    final = store.read(stage="final").to_pandas()
    ok = search[search["status"] == "ok"]
    summary = json.loads((out / "summary.json").read_text())
    best = ok[ok["trial_id"] == summary["best_trial_id"]].iloc[0]
    recovered = final[final["source_trial_id"] == best["trial_id"]]
    recovered_top1 = float(recovered["top1_after"].iloc[-1]) if len(recovered) else None
    taus = {r.signal: r.tau for r in signal_rankings(search)} if len(ok) >= 3 else {}
    rungs = ok["rung"].dropna().astype(int).value_counts().sort_index().to_dict() if ok["rung"].notna().any() else {}
    return {"trials": int(len(search)), "ok": int(len(ok)), "steps": int(search["steps_trained"].fillna(0).sum()),
            "best_trial": str(best["trial_id"]), "best_strategy": str(best["strategy_json"]),
            "proxy": float(best["top1_after"]), "best_steps": int(best["steps_trained"]),
            "recovered": recovered_top1,
            "gain": None if recovered_top1 is None else recovered_top1 - float(best["top1_after"]),
            "tau_before": taus.get("top1_before"), "tau_adaptive_bn": taus.get("top1_adaptive_bn"),
            "rung_counts": {str(k): int(v) for k, v in rungs.items()},
            "wall_s": float(pd.to_numeric(search["seconds_total"], errors="coerce").fillna(0).sum())}


def run_arm(setting: str, arm: str, plan: Plan, seed: int, out: Path, say) -> dict[str, Any]:
    from multi_agent_pruning.orchestrator.experiment import run_experiment
    from multi_agent_pruning.orchestrator.recover import finetune_run

    cfg, trials = build_config(setting, arm, plan, seed)
    where = out / setting / f"seed{seed}" / arm
    say(f"{setting} seed {seed} {arm}: {trials} strategies, {cfg.finetune.steps} steps each"
        + (f" (rungs {cfg.search.rung_budgets()})" if cfg.search.scheduler == "asha" else ""))
    start = time.perf_counter()
    run_experiment(cfg, output_dir=where, progress=False)
    searched = time.perf_counter() - start
    epochs = plan.recovery_epochs or RECOVERY_EPOCHS[SETTINGS[setting]["dataset"]]
    say(f"{setting} seed {seed} {arm}: recovering the best strategy, {epochs} epochs")
    finetune_run(where, top_k=1, epochs=epochs, progress=False)
    numbers = measure_run(where)
    return {**numbers, "seed": seed, "search_minutes": searched / 60,
            "recovery_minutes": (time.perf_counter() - start - searched) / 60}


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per arm: means over seeds of steps, proxy, recovered accuracy and gain."""
    out = {}
    fifo_steps = _mean([r["steps"] for r in runs.get("fifo", [])])
    for arm, items in runs.items():
        if not items:
            continue
        steps = _mean([r["steps"] for r in items])
        out[arm] = {"steps": steps, "steps_vs_fifo": steps / fifo_steps if fifo_steps and steps is not None else None,
                    "proxy": _mean([r["proxy"] for r in items]), "recovered": _mean([r["recovered"] for r in items]),
                    "recovered_per_seed": [r["recovered"] for r in items],
                    "gain": _mean([r["gain"] for r in items]),
                    "min_gain": min((r["gain"] for r in items if r["gain"] is not None), default=None),
                    "tau_before": _mean([r["tau_before"] for r in items]),
                    "tau_adaptive_bn": _mean([r["tau_adaptive_bn"] for r in items])}
    return out


def _f(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_setting(setting: str, summary: dict[str, dict]) -> list[str]:
    lines = [f"| setting | arm | fine-tune steps (x FIFO) | best proxy | recovered (per seed) | recovery gain "
             f"(min) | tau top1_before | tau adaptive BN |", "|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        seeds = ", ".join(_f(v) for v in s["recovered_per_seed"])
        lines.append(f"| {setting} | {arm} | {_f(s['steps'], '.0f')} ({_f(s['steps_vs_fifo'], '.2f')}) | "
                     f"{_f(s['proxy'])} | {_f(s['recovered'])} ({seeds}) | {_f(s['gain'], '+.4f')} "
                     f"({_f(s['min_gain'], '+.4f')}) | {_f(s['tau_before'], '.2f')} | {_f(s['tau_adaptive_bn'], '.2f')} |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.output) / stamp
    clock = time.perf_counter()

    def say(message: str) -> None:
        minutes, seconds = divmod(int(time.perf_counter() - clock), 60)
        print(f"[fidelity {minutes:d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)

    info = search_quality.machine()
    command = "python benchmarks/fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"plan": plan.__dict__, "machine": info, "command": command, "settings": {}}
    for setting in plan.settings:
        runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
        for seed in range(plan.seed, plan.seed + plan.seeds):
            for arm in ARMS:
                runs[arm].append(run_arm(setting, arm, plan, seed, out, say))
                if args.json:  # every finished search is kept, even if a later one fails
                    results["settings"][setting] = {"runs": runs, "summary": summarize(runs)}
                    Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        summary = summarize(runs)
        results["settings"][setting] = {"runs": runs, "summary": summary}
        print("\n".join(["", *format_setting(setting, summary)]), flush=True)
    print(f"\ncommand: {command}\nmachine: {info['cpu']}, {info['cores']} cores; date {info['date']}, "
          f"commit {info.get('commit') or '-'}; output {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
