"""Built-in master policy vs random proposals from the same strategy space, same budget.

Each method proposes ``--budget`` strategies in batches of ``--batch`` (the policy sees the
results of earlier batches; random proposals do not), every strategy is evaluated by the shared
trial function (prune to the target, fine-tune, evaluate) without Ray, on digits with the
quickstart CNN. Repeated over ``--seeds`` seeds; prints the best top-1 per seed and method.

    python benchmarks/policy_vs_random.py --seeds 3 --budget 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from datetime import datetime, timezone


def sample_random(space, base, kinds, rng: random.Random, method):
    params = {}
    for d in space:
        if d.kind == "categorical":
            params[d.name] = rng.choice(list(d.choices))
        elif d.kind == "int":
            params[d.name] = rng.randint(int(d.low), int(d.high))
        elif d.kind == "float_log":
            params[d.name] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
        else:
            params[d.name] = rng.uniform(d.low, d.high)
    return method.strategy_from_params(base, params, kinds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--reduction", type=float, default=0.8)
    p.add_argument("--finetune-steps", type=int, default=40)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    from multi_agent_pruning.agents.policy import BuiltinPolicy, Observation
    from multi_agent_pruning.baselines import FullSpaceMethod
    from multi_agent_pruning.config import load_config
    from multi_agent_pruning.core.profile import profile_model
    from multi_agent_pruning.data import create_calibration_loader
    from multi_agent_pruning.orchestrator.prepare import base_strategy, build_context
    from multi_agent_pruning.search.trial import evaluate_strategy

    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    cfg = load_config("configs/quickstart.yaml", overrides=[
        f"target.reduction={args.reduction}", "target.sweep=null", f"finetune.steps={args.finetune_steps}",
        "evaluation.latency=false", "safety_limits.max_overall_pruning=0.9", "safety_limits.max_conv_pruning=0.9"])
    base = base_strategy(cfg)
    results = {"policy": [], "random": []}
    started = time.perf_counter()
    for seed in range(args.seeds):
        context = build_context(cfg, method="bench", run=seed, seed=cfg.experiment.seed + seed)
        calib = [b for _, b in zip(range(1), create_calibration_loader(context.bundle, 128))]
        profile = profile_model(context.model, torch.randn(*context.input_shape), calib)
        kinds = profile.kinds
        space = FullSpaceMethod().search_space(base, list(kinds))
        policy, history = BuiltinPolicy(seed=seed), []
        rng = random.Random(seed)
        for name in ("policy", "random"):
            best, done, iteration = 0.0, 0, 0
            history = []
            while done < args.budget:
                size = min(args.batch, args.budget - done)
                if name == "policy":
                    batch = policy.propose(kinds, base, history, size, iteration)
                else:
                    batch = [sample_random(space, base, list(kinds), rng, FullSpaceMethod()) for _ in range(size)]
                for strategy in batch:
                    row = evaluate_strategy(strategy, context, trial_id=f"{name}-{seed}-{done}", iteration=iteration)
                    score = row.top1_after if row.status == "ok" else None
                    history.append(Observation(strategy, score))
                    best = max(best, score or 0.0)
                    done += 1
                iteration += 1
            results[name].append(best)
            print(f"seed {seed} {name:<7} best top-1 {best:.4f}", flush=True)
    summary = {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "per_seed": v}
               for k, v in results.items()}
    print(json.dumps(summary, indent=1))
    print(f"policy >= random on {sum(a >= b for a, b in zip(results['policy'], results['random']))}"
          f"/{args.seeds} seeds; {(time.perf_counter() - started) / 60:.1f} min")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "summary": summary,
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "load_avg": os.getloadavg()}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
