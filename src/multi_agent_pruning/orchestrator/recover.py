"""``mapruner finetune RUN_DIR``: the final recovery of a finished run's best strategies.

The search ranks strategies with a short fine-tune (the proxy). This takes the ``top_k`` best
strategies of each target of the run, re-prunes each one from the dense model (the same model,
data and calibration batches the search used: the pruned structure is the searched one, checked
against the row's MACs), and recovers it for ``epochs`` with the full recipe of
:mod:`~multi_agent_pruning.core.recovery` (AdamW, warm-up + cosine, distillation from the dense
teacher, optional EMA, a checkpoint after every epoch). Then:

- each recovery is a row of the run's table with ``stage = "final"``, ``source_trial_id`` (the
  search trial) and ``recovery_epochs``; search statistics and reports never mix them in
  (``ResultStore`` reads search rows unless asked);
- the recovered model is saved as the search's best model is (``model.safetensors`` +
  ``model.json``) in ``recovered/<target>/<trial>/model``, with the per-epoch history in
  ``recovered/<target>/<trial>/recovery.json``;
- ``summary.json`` gains ``recovered`` (the first-ranked strategy of the summary's target:
  ``final_accuracy``, ``epochs``, ``model_path``, ``proxy_accuracy``, ...) and ``recoveries``
  (every recovered strategy, per target and rank).

An interrupted recovery continues with ``resume=True`` (``--resume``) after its last finished
epoch, with no epoch lost or repeated; a strategy whose final row is already stored for the same
settings is not recovered again. With ``hardware.distributed`` (``enabled``, ``world_size`` > 1)
the recovery runs data-parallel across Ray Train workers
(:func:`~multi_agent_pruning.core.distributed.distributed_recover`, ``batch_size`` per worker);
the run directory must then be on storage every node can read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


from multi_agent_pruning.config import ExperimentConfig, load_config_dict
from multi_agent_pruning.core.distributed import DistributedSettings, distributed_recover
from multi_agent_pruning.core.evaluation import evaluate, resolve_device
from multi_agent_pruning.core.recovery import CHECKPOINT_FILE, RecoveryConfig, recover
from multi_agent_pruning.core.serialization import save_pruned_model
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.data import create_loaders
from multi_agent_pruning.exceptions import CheckpointError, ConfigIssue, ConfigurationError
from multi_agent_pruning.orchestrator.experiment import rank_key, write_run_report
from multi_agent_pruning.orchestrator.prepare import ExperimentPaths, build_context, read_state
from multi_agent_pruning.results import ResultStore, TrialResult, strategy_columns
from multi_agent_pruning.results.targets import point_target, row_target
from multi_agent_pruning.search.trial import TrialContext, evaluate_dense, prune_strategy, seed_everything
from multi_agent_pruning.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["STOP_AFTER_ENV", "finetune_run"]

#: Test hook: the process kills itself (SIGKILL) right after the checkpoint of this epoch, as an
#: interrupted recovery would end. Unset in normal use.
STOP_AFTER_ENV = "MAPRUNER_RECOVERY_KILL_AFTER_EPOCH"


def finetune_run(run_dir: str | os.PathLike[str], *, top_k: int = 1, epochs: int = 10, lr: float | None = None,
                 kd_weight: float = 0.5, ema_decay: float | None = None, warmup_epochs: float = 1.0,
                 batch_size: int | None = None, resume: bool = False, device: str | None = None,
                 progress: bool | None = None) -> dict[str, Any]:
    """Recovers the ``top_k`` best strategies per target of the run in ``run_dir`` (module docstring).

    Args:
        run_dir: A finished (or stopped) ``mapruner prune`` run: its ``experiment.json`` and table.
        top_k: Strategies recovered per target, best proxy accuracy first.
        epochs / lr / kd_weight / ema_decay / warmup_epochs / batch_size: The recovery
            (:class:`~multi_agent_pruning.core.recovery.RecoveryConfig`); ``lr`` None takes each
            strategy's searched learning rate, ``batch_size`` None the run's fine-tune batch size.
        resume: Continue interrupted recoveries from their checkpoints.
        device: ``cpu``, ``cuda``, ... (None: the run's ``hardware.device``).
        progress: A progress bar (None: when stderr is a terminal).

    Returns:
        The updated summary (also written to ``summary.json``).

    Raises:
        ConfigurationError: ``run_dir`` holds no run, no trial of it succeeded, a setting is
            invalid, or an interrupted recovery's checkpoint exists and ``resume`` is False.
        CheckpointError: A checkpoint cannot be resumed (other settings, another structure).
    """
    if top_k < 1:
        raise ConfigurationError("Invalid arguments:", [ConfigIssue("--top-k", "must be >= 1", top_k)])
    paths = ExperimentPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise ConfigurationError(f"{paths.root} is not a directory: pass the output directory of a mapruner prune run")
    state = read_state(paths)
    if state is None or not isinstance(state.get("config"), dict):
        raise ConfigurationError(f"{paths.root} holds no mapruner run (experiment.json with its config is missing)")
    cfg = load_config_dict(state["config"])
    method = state.get("method") or "multi_agent"
    store = ResultStore(paths.results)
    searched = store.rows(experiment=cfg.experiment.name, method=method, status="ok")
    chosen = _chosen(cfg, [r for r in searched if r.top1_after is not None], top_k)
    if not chosen:
        raise ConfigurationError(f"{paths.root}: no trial of {cfg.experiment.name!r} ({method}) succeeded, "
                                 "so there is no strategy to recover")
    ft_batch = cfg.effective_finetune().batch_size or cfg.effective_dataset().batch_size
    settings = {"epochs": epochs, "kd_weight": kd_weight, "ema_decay": ema_decay, "warmup_epochs": warmup_epochs,
                "batch_size": batch_size or ft_batch, "seed": cfg.experiment.seed}
    RecoveryConfig.build(**settings, lr=lr or 1e-3)  # every setting checked before any work
    done = {r.trial_id: r for r in store.rows(experiment=cfg.experiment.name, method=method, stage="final")}
    context = build_context(cfg, method=method, run=0)
    if device is not None:
        context = dataclasses.replace(context, device=device)
    context = dataclasses.replace(context, dense_top1=evaluate_dense(context))
    show = sys.stderr.isatty() if progress is None else progress
    entries = []
    for target, rank, row in chosen:
        config = RecoveryConfig.build(**settings, lr=lr or row.learning_rate or 1e-3)
        trial_id = f"final-{row.trial_id}-e{epochs}"
        folder = paths.root / "recovered" / target.slug / row.trial_id
        stored = done.get(trial_id)
        if stored is not None and stored.status == "ok" and _same_settings(folder, config):
            logger.info("%s is already recovered (%s); not again", row.trial_id, trial_id)
            entries.append(_entry(target, rank, row, stored, folder))
            continue
        if (folder / "checkpoint" / CHECKPOINT_FILE).exists() and not resume:
            raise ConfigurationError(
                f"{folder / 'checkpoint'} holds the checkpoint of an earlier recovery of {row.trial_id} (interrupted, "
                f"or with other settings): pass --resume to continue it with the same settings, or delete that "
                f"folder to start over")
        if trial_id in done:  # an earlier attempt's row (failed, or other settings) stays; this one is new
            trial_id = next(f"{trial_id}-{n}" for n in range(2, 10_000) if f"{trial_id}-{n}" not in done)
        final = _recover_one(context, row, config, folder, trial_id, resume=resume, progress=show)
        store.append(final)
        entries.append(_entry(target, rank, row, final, folder))
    return _update_summary(paths, cfg, entries)


def _chosen(cfg: ExperimentConfig, rows: list[TrialResult], top_k: int):
    """``(target, rank, row)`` of the best ``top_k`` rows of each target, easiest target first."""
    out = []
    for point in cfg.target.points():
        key = point_target(point)
        mine = sorted((r for r in rows if row_target(r) == key), key=rank_key)  # as the summary ranks
        out += [(key, rank, row) for rank, row in enumerate(mine[:top_k], start=1)]
    return out


def _same_settings(folder: Path, config: RecoveryConfig) -> bool:
    try:
        return json.loads((folder / "recovery.json").read_text())["settings"] == config.model_dump()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _recover_one(context: TrialContext, row: TrialResult, config: RecoveryConfig, folder: Path, trial_id: str, *,
                 resume: bool, progress: bool) -> TrialResult:
    """Re-prunes ``row``'s strategy from the dense model and recovers it; a failed row on error."""
    strategy = Strategy.from_json(row.strategy_json)
    ids = {**context.identifiers(trial_id, row.iteration), "run": row.run, "seed": row.seed, "stage": "final",
           "source_trial_id": row.trial_id}
    started = dt.datetime.now(dt.timezone.utc)
    began = time.perf_counter()
    device = resolve_device(context.device)
    try:
        seed_everything(context.seed)
        dense, model, prune = prune_strategy(strategy, context, device)
        if row.macs is not None and not math.isclose(prune["macs"], row.macs, rel_tol=1e-9):
            logger.warning("re-pruning %s gave %.6g MACs, the search trial had %.6g: the dense model or the data "
                           "changed since the search", row.trial_id, prune["macs"], row.macs)
        _, val_loader = create_loaders(context.bundle, context.batch_size, num_workers=context.num_workers)
        before = evaluate(model, val_loader, device=device)
        pruned_at = time.perf_counter()

        def train_loader_for(epoch: int):
            return create_loaders(context.bundle, config.batch_size, num_workers=context.num_workers,
                                  seed=config.seed * 1000 + epoch)[0]

        kill_after = int(os.environ.get(STOP_AFTER_ENV) or 0)

        def on_epoch(entry: dict[str, Any]) -> None:
            if kill_after and entry["epoch"] == kill_after:  # the test hook (module constant)
                os.kill(os.getpid(), signal.SIGKILL)

        teacher = dense if config.kd_weight > 0 else None
        if context.distributed:  # hardware.distributed: data-parallel through Ray Train
            result = distributed_recover(model, context.bundle.train, context.bundle.val, config,
                                         DistributedSettings(**context.distributed),
                                         checkpoint_dir=str(folder / "checkpoint"), teacher=teacher)
        else:
            result = recover(model, train_loader_for, val_loader, config, checkpoint_dir=folder / "checkpoint",
                             teacher=teacher, resume=resume, device=device, progress=progress, on_epoch=on_epoch)
        _write_history(folder, row, config, result.history, result.resumed_from)
        save_pruned_model(model.cpu(), folder / "model", base_model=context.model_name,
                          model_kwargs=context.model_kwargs,
                          metadata={"strategy": strategy.to_dict(), "macs": prune["macs"], "params": prune["params"],
                                    "top1": result.top1, "trial_id": trial_id, "source_trial_id": row.trial_id,
                                    "stage": "final", "recovery": config.model_dump(),
                                    "experiment": context.experiment})
        return TrialResult(
            **ids, **{k: v for k, v in strategy_columns(strategy).items() if k != "target_value"},
            recovery_epochs=result.epochs, base_macs=prune["base_macs"], base_params=prune["base_params"],
            macs=prune["macs"], params=prune["params"], macs_reduction=prune["macs_reduction"],
            params_reduction=prune["params_reduction"], target_value=prune["target"], target_error=prune["error"],
            top1_before=before["top1"], top5_before=before.get("top5"), top1_after=result.top1,
            top5_after=result.top5, loss_after=result.history[-1].get("loss") if result.history else None,
            seconds_prune=pruned_at - began, seconds_finetune=sum(e["seconds"] for e in result.history),
            seconds_total=time.perf_counter() - began, status="ok", started_at=started,
            finished_at=dt.datetime.now(dt.timezone.utc))
    except (ConfigurationError, CheckpointError):
        raise
    except Exception as err:  # a failed recovery is a row, as a failed trial is
        logger.error("recovery of %s failed: %s", row.trial_id, err)
        return TrialResult.failed(error=err, strategy=strategy, **ids, started_at=started,
                                  seconds_total=time.perf_counter() - began)


def _write_history(folder: Path, row: TrialResult, config: RecoveryConfig, history: list[dict[str, Any]],
                   resumed_from: int) -> None:
    """``recovery.json``: the settings, every epoch's numbers, and after which epoch each session
    of the recovery started (``[0]`` for one that ran through, ``[0, 1]`` or ``[1]`` after a resume)."""
    try:
        previous = json.loads((folder / "recovery.json").read_text())
    except (OSError, ValueError):
        previous = {}
    starts = list(previous.get("resumed_from", [])) if previous.get("settings") == config.model_dump() else []
    atomic_write_json(folder / "recovery.json", {
        "source_trial_id": row.trial_id, "proxy_accuracy": row.top1_after, "settings": config.model_dump(),
        "history": history, "resumed_from": [*starts, resumed_from]})


def _entry(target, rank: int, row: TrialResult, final: TrialResult, folder: Path) -> dict[str, Any]:
    model = folder / "model"
    return {"target": target.label, "rank": rank, "source_trial_id": row.trial_id, "trial_id": final.trial_id,
            "status": final.status, "proxy_accuracy": row.top1_after, "final_accuracy": final.top1_after,
            "final_top5": final.top5_after, "accuracy_before_finetune": final.top1_before,
            "epochs": final.recovery_epochs, "macs": final.macs, "params": final.params,
            "macs_reduction": final.macs_reduction, "params_reduction": final.params_reduction,
            "model_path": str(model) if final.status == "ok" and model.exists() else None,
            **({"error": final.error} if final.status != "ok" else {})}


def _update_summary(paths: ExperimentPaths, cfg: ExperimentConfig, entries: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        summary = json.loads(paths.summary.read_text())
    except (OSError, ValueError):
        summary = {"experiment": cfg.experiment.name, "output_dir": str(paths.root)}
    target = summary.get("best_target")
    firsts = [e for e in entries if e["rank"] == 1 and (target is None or e["target"] == target)]
    summary["recovered"] = firsts[-1] if firsts else None
    summary["recoveries"] = entries
    report = write_run_report(paths, cfg.experiment.name)  # with its final-recovery section
    if report is not None:
        summary["report_path"] = report
    atomic_write_json(paths.summary, summary)
    return summary
