"""Run subcommands of ``mapruner`` (profile, prune, compare, report). Each maps to one library
function, imported when the command runs: the orchestrator pulls in Ray, torch and Ray Tune
(seconds), which ``mapruner --help``, ``models`` and ``validate-config`` do not need."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from multi_agent_pruning.cli_registry import EXIT_FAILED, EXIT_OK, command

__all__ = ["add_subcommands"]


def _add_run_arguments(parser: argparse.ArgumentParser, add_config_arguments) -> None:
    """Config, model, dataset and target options shared by ``prune`` and ``compare``."""
    add_config_arguments(parser)
    parser.add_argument("--model", help="model name (overrides model.name)")
    parser.add_argument("--dataset", help="dataset name (overrides dataset.name)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target-ratio", help="fraction of the target kind (MACs by default) to remove, in (0, 1); "
                        "several, comma-separated (0.3,0.5,0.7), search the frontier in one run")
    target.add_argument("--target-macs", help="MACs to keep: a fraction of the dense MACs (0.5) or a count (2.3e9, "
                        "2.3G); several, comma-separated (0.7,0.5,0.3 or 2.3G,1.2G), search the frontier in one run")


def add_subcommands(sub, add_config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    profile = sub.add_parser("profile", help="profile a model: pruning groups, their cost and sensitivity")
    add_config_arguments(profile)
    profile.add_argument("--model", help="model name (overrides model.name)")
    profile.add_argument("--dataset", help="dataset name (overrides dataset.name)")
    profile.add_argument("--json", action="store_true", help="print the profile as JSON")

    prune = sub.add_parser("prune", help="run the multi-agent pruning search")
    _add_run_arguments(prune, add_config_arguments)
    prune.add_argument("--trials", type=int, help="trial budget (overrides search.trials)")
    prune.add_argument("--max-iterations", type=int, help="master iterations (overrides search.max_iterations)")
    prune.add_argument("--output-dir", help="experiment directory (default: <experiment.output_dir>/<name>)")
    prune.add_argument("--address", help="Ray cluster to join ('auto', ray://..., host:port); default: local")
    prune.add_argument("--resume", action="store_true", help="continue an interrupted experiment in --output-dir")
    prune.add_argument("--recover", action="store_true",
                       help="after the search, recover its best strategy per target (mapruner finetune with its "
                            "defaults: --epochs 10)")

    finetune = sub.add_parser("finetune", help="final recovery of a finished run's best strategies: re-prune from the "
                                               "dense model, distil, checkpoint every epoch")
    finetune.add_argument("run_dir", help="the output directory of a mapruner prune run")
    finetune.add_argument("--top-k", type=int, default=1, help="strategies recovered per target, best first (1)")
    finetune.add_argument("--epochs", type=int, default=10, help="recovery epochs (10)")
    finetune.add_argument("--lr", type=float, help="peak AdamW learning rate (default: each strategy's searched rate)")
    finetune.add_argument("--kd-weight", type=float, default=0.5, help="distillation weight from the dense model (0.5)")
    finetune.add_argument("--ema-decay", type=float, help="keep an EMA of the weights with this decay (e.g. 0.999)")
    finetune.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up epochs (1)")
    finetune.add_argument("--batch-size", type=int, help="training batch size (default: the run's fine-tune batch size)")
    finetune.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the run's hardware.device)")
    finetune.add_argument("--resume", action="store_true", help="continue interrupted recoveries from their checkpoints")

    compare = sub.add_parser("compare", help="compare methods at the same trial budget, seeds and fine-tune budget")
    _add_run_arguments(compare, add_config_arguments)
    compare.add_argument("--methods", help="comma-separated: multi_agent,magnitude_l1,magnitude_l2,taylor,"
                                           "isomorphic,random,optuna_tpe (default: baselines.methods, or every method)")
    compare.add_argument("--num-runs", type=int, help="repetitions with different seeds (baselines.num_runs)")
    compare.add_argument("--trials-per-method", type=int, help="trial budget of every method (search.trials)")
    compare.add_argument("--output-dir", help="comparison directory (default: <experiment.output_dir>/<name>)")
    compare.add_argument("--address", help="Ray cluster to join; default: local")

    report = sub.add_parser("report", help="write the HTML report of a results directory (from the table alone)")
    report.add_argument("results_dir", help="an experiment directory or its results/ folder")
    report.add_argument("-o", "--output", help="HTML file to write (default: <experiment dir>/report.html)")
    report.add_argument("--experiment", help="only this experiment of the table")
    report.add_argument("--title", help="page title")


@command("profile")
def _profile(args: argparse.Namespace) -> int:
    from multi_agent_pruning.orchestrator.local import profile_from_args

    print(profile_from_args(args))
    return EXIT_OK


def _load(args: argparse.Namespace, extra: list[str]):
    from multi_agent_pruning.config import load_config, load_config_dict

    overrides = list(args.overrides) + extra
    return load_config(args.config, overrides=overrides) if args.config else load_config_dict({}, overrides=overrides)


def _run_overrides(args: argparse.Namespace) -> list[str]:
    from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError
    from multi_agent_pruning.orchestrator.targets import target_overrides

    extra = target_overrides(target_ratio=args.target_ratio, target_macs=args.target_macs)
    for flag, key in (("model", "model.name"), ("dataset", "dataset.name")):
        if getattr(args, flag, None):
            extra.append(f"{key}={getattr(args, flag)}")
    for flag, key in (("trials", "search.trials"), ("max_iterations", "search.max_iterations")):
        value = getattr(args, flag, None)
        if value is not None:
            if value < 1:
                raise ConfigurationError("Invalid arguments:", [ConfigIssue(f"--{flag.replace('_', '-')}", "must be >= 1", value)])
            extra.append(f"{key}={value}")
    return extra


@command("prune")
def _prune(args: argparse.Namespace) -> int:
    import json

    from multi_agent_pruning.orchestrator.experiment import run_experiment

    cfg = _load(args, _run_overrides(args))
    summary = run_experiment(cfg, output_dir=args.output_dir, resume=args.resume, address=args.address)
    if args.recover and summary.get("final_accuracy") is not None:
        from multi_agent_pruning.orchestrator.recover import finetune_run

        summary = {**summary, **finetune_run(summary["output_dir"], resume=args.resume)}
    print(format_summary(summary))
    print(json.dumps({"summary": str(summary["output_dir"]) + "/summary.json"}))
    return EXIT_OK if summary.get("final_accuracy") is not None else EXIT_FAILED


def format_summary(summary: dict) -> str:
    """The final table of a prune run."""
    def pct(value):
        return "-" if value is None else f"{value:.1%}"

    t = summary["trials"]
    lines = [
        f"experiment      {summary['experiment']} ({summary['method']}: {summary['model']} on {summary['dataset']})",
        f"target          {summary['target']}",
        f"trials          {t['total']} ({t['ok']} ok, {t['failed']} failed, {t['rejected']} rejected) "
        f"in {summary['convergence_iterations']} iterations; stop: {summary.get('stop_reason') or 'budget used'}",
        f"best top-1      {pct(summary['final_accuracy'])} (before fine-tuning {pct(summary['accuracy_before_finetune'])})",
        f"MACs reduction  {pct(summary['macs_reduction'])}   params reduction {pct(summary['params_reduction'])}",
        f"time            {summary['total_time_minutes']:.1f} min",
        f"results         {summary['results_path']}",
        f"best model      {summary['best_model_path']}",
        f"report          {summary.get('report_path')}",
    ]
    if summary.get("frontier"):
        lines[3:3] = [f"best per target (top-level lines: the hardest target with a model, {summary.get('best_target')})"]
        lines[4:4] = [f"  {e['target']:<24} top-1 {pct(e['final_accuracy']):>6}   MACs -{pct(e['macs_reduction']):>6}   "
                      f"params -{pct(e['params_reduction']):>6}   {e['trials']['ok']}/{e['trials']['total']} ok"
                      for e in summary["frontier"]]
    for entry in summary.get("recoveries") or []:
        lines.append(f"recovered       {entry['target']} #{entry['rank']} ({entry['source_trial_id']}): top-1 "
                     f"{pct(entry['final_accuracy'])} after {entry['epochs']} epochs (proxy {pct(entry['proxy_accuracy'])})"
                     f"   {entry['model_path'] or entry.get('error')}")
    if summary.get("error"):
        lines.append(f"error           {summary['error']}")
    return "\n".join(lines)


@command("finetune")
def _finetune(args: argparse.Namespace) -> int:
    import json

    from multi_agent_pruning.orchestrator.recover import finetune_run

    summary = finetune_run(args.run_dir, top_k=args.top_k, epochs=args.epochs, lr=args.lr, kd_weight=args.kd_weight,
                           ema_decay=args.ema_decay, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
                           resume=args.resume, device=args.device)
    for entry in summary["recoveries"]:
        print(f"{entry['target']:<24} #{entry['rank']} {entry['source_trial_id']}: proxy {entry['proxy_accuracy']:.4f} "
              f"-> recovered {'-' if entry['final_accuracy'] is None else format(entry['final_accuracy'], '.4f')} "
              f"({entry['epochs']} epochs)  {entry['model_path'] or entry.get('error')}")
    print(json.dumps({"summary": str(Path(args.run_dir).resolve() / "summary.json")}))
    return EXIT_OK if all(e["status"] == "ok" for e in summary["recoveries"]) else EXIT_FAILED


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError
    from multi_agent_pruning.orchestrator.compare import compare_methods, format_comparison

    for flag in ("num_runs", "trials_per_method"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigurationError("Invalid arguments:", [ConfigIssue(f"--{flag.replace('_', '-')}", "must be >= 1", value)])
    args.trials = args.max_iterations = None
    cfg = _load(args, _run_overrides(args))
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise ConfigurationError("Invalid arguments:", [ConfigIssue("--methods", "must name at least one method, "
                                                                        "comma-separated", args.methods)])
    comparison = compare_methods(cfg, methods, num_runs=args.num_runs, trials_per_method=args.trials_per_method,
                                 output_dir=args.output_dir, address=args.address)
    print(format_comparison(comparison))
    return EXIT_OK


@command("report")
def _report(args: argparse.Namespace) -> int:
    from multi_agent_pruning.reports import write_report

    print(write_report(args.results_dir, args.output, experiment=args.experiment, title=args.title))
    return EXIT_OK
