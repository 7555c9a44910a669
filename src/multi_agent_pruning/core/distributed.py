"""Data-parallel fine-tuning of one trial's pruned model with Ray Train (``TorchTrainer``).

Used when ``hardware.distributed.enabled`` and ``world_size > 1``: the Tune trial (a light
driver) launches a TorchTrainer whose workers fine-tune the same pruned model with
DistributedDataParallel on their shard of the training set (backend ``nccl`` on GPUs, ``gloo``
on CPUs), with mixed precision and gradient checkpointing from the config. Rank 0 returns the
weights; the trial then evaluates them as usual. This is Ray Train V2's recommended way to run
Train inside Tune.

The trial's deadline reaches the workers as the seconds left when they are launched (clocks of
other processes and nodes are not comparable): each worker checks it before every step, and a
worker past it fails the run, which the trial reports as its TrialTimeoutError.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from multi_agent_pruning.core.evaluation import Deadline
from multi_agent_pruning.core.training import FineTuneConfig, fine_tune, set_gradient_checkpointing
from multi_agent_pruning.exceptions import PruningError, TrialTimeoutError

__all__ = ["DistributedSettings", "distributed_fine_tune", "distributed_recover"]


@dataclass(frozen=True)
class DistributedSettings:
    """How a trial's fine-tuning is spread over workers.

    Attributes:
        world_size: Number of data-parallel workers.
        backend: ``nccl`` (GPUs) or ``gloo`` (CPUs).
        use_gpu: One GPU per worker.
        cpus_per_worker: CPUs reserved by each worker.
        gradient_checkpointing: Trade compute for memory where the model supports it (timm).
    """

    world_size: int = 2
    backend: str = "gloo"
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gradient_checkpointing: bool = False


def distributed_fine_tune(model: nn.Module, train_dataset: Any, config: Any, settings: DistributedSettings, *,
                          batch_size: int, teacher: nn.Module | None = None, seed: int = 0,
                          storage_path: str | None = None, deadline: Deadline | None = None) -> dict[str, Any]:
    """Fine-tunes ``model`` in place across ``settings.world_size`` Ray Train workers.

    Args:
        model: The pruned model (its weights are replaced by the trained ones).
        train_dataset: The training split (a torch Dataset); each worker reads its shard.
        config: A :class:`~multi_agent_pruning.core.training.FineTuneConfig`.
        settings: World size, backend, devices.
        batch_size: Per-worker batch size.
        teacher: Dense model for distillation (when ``config.kd_weight > 0``).
        seed: Seed of every worker.
        storage_path: Where Ray Train keeps its run (default: a temp dir; a shared path on clusters).
        deadline: The trial's limit; every worker checks the seconds left before every step.

    Returns:
        Rank 0's training summary (steps, losses, seconds, world size).

    Raises:
        TrialTimeoutError: ``deadline`` passed (before the launch, or a worker found it passed).
        PruningError: The run failed otherwise.
    """
    import ray  # Ray Train: a heavy import, needed only on the data-parallel path
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer


    if deadline is not None:
        deadline.check()
    storage = storage_path or tempfile.mkdtemp(prefix="mapruner-train-")
    loop_config = {
        "model": ray.put(model.cpu()), "teacher": ray.put(teacher.cpu()) if teacher is not None else None,
        "dataset": ray.put(train_dataset), "config": config.model_dump(), "batch_size": batch_size, "seed": seed,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "time_limit": None if deadline is None else (deadline.seconds, deadline.elapsed, deadline.current),
    }
    resources = {"CPU": settings.cpus_per_worker}
    trainer = TorchTrainer(
        _worker_loop, train_loop_config=loop_config,
        torch_config=TorchConfig(backend=settings.backend),
        scaling_config=ScalingConfig(num_workers=settings.world_size, use_gpu=settings.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"finetune-{os.getpid()}-{id(model)}", storage_path=storage),
    )
    try:
        result = trainer.fit()
    except Exception as err:
        if deadline is not None and deadline.expired():
            raise _timeout(deadline, err) from err
        raise
    if (result.error is not None or result.checkpoint is None) and deadline is not None and deadline.expired():
        raise _timeout(deadline, result.error)
    if result.error is not None or result.checkpoint is None:
        raise PruningError(f"distributed fine-tuning failed: {result.error}")
    with result.checkpoint.as_directory() as directory:
        state = load_file(os.path.join(directory, "model.safetensors"))
    model.load_state_dict(state)
    return dict(result.metrics)


def _timeout(deadline: Deadline, err: BaseException | None):
    return TrialTimeoutError(deadline.seconds, deadline.current, deadline.elapsed,
                             f"the data-parallel run stopped: {type(err).__name__}" if err is not None else "")


def _worker_deadline(time_limit: tuple[float, float, str] | None):
    """The trial's deadline in this worker: the seconds left at launch, counted from now."""
    if time_limit is None:
        return None
    seconds, elapsed, stage = time_limit
    return Deadline(seconds, stage=stage, elapsed=elapsed)


def _worker_loop(loop_config: dict[str, Any]) -> None:
    import ray
    import ray.train
    import ray.train.torch

    torch.manual_seed(loop_config["seed"])
    model = ray.get(loop_config["model"])
    if loop_config["gradient_checkpointing"]:
        set_gradient_checkpointing(model)
    teacher = ray.get(loop_config["teacher"]) if loop_config["teacher"] is not None else None
    dataset = ray.get(loop_config["dataset"])
    loader = DataLoader(dataset, batch_size=loop_config["batch_size"], shuffle=True, drop_last=True)
    loader = ray.train.torch.prepare_data_loader(loader)  # DistributedSampler + device moves
    ddp = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    if teacher is not None:
        teacher = teacher.to(device).eval()
    config = FineTuneConfig(**loop_config["config"])
    result = fine_tune(ddp, loader, config, teacher=teacher, device=device, seed=loop_config["seed"],
                       deadline=_worker_deadline(loop_config.get("time_limit")))
    context = ray.train.get_context()
    metrics = {"steps": result.steps, "final_loss": result.final_loss, "mean_loss": result.mean_loss,
               "seconds": result.seconds, "world_size": context.get_world_size()}
    if context.get_world_rank() == 0:
        inner = ddp.module if hasattr(ddp, "module") else ddp
        with tempfile.TemporaryDirectory() as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in inner.state_dict().items()},
                      os.path.join(tmp, "model.safetensors"))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def distributed_recover(model: nn.Module, train_dataset: Any, val_dataset: Any, config: Any,
                        settings: DistributedSettings, *, checkpoint_dir: str, teacher: nn.Module | None = None,
                        storage_path: str | None = None, max_failures: int = 2) -> Any:
    """The final recovery (:func:`~multi_agent_pruning.core.recovery.recover`) data-parallel across
    ``settings.world_size`` Ray Train workers; ``model`` gets the recovered weights.

    Every worker runs the same epochs on its shard of ``train_dataset`` (a ``DistributedSampler``
    seeded with ``config.seed`` and set to the epoch, so the order stays a function of the seed and
    the epoch) with the model wrapped in DistributedDataParallel; ``config.batch_size`` is per
    worker. Rank 0 writes the checkpoint after every epoch into ``checkpoint_dir``, which must be
    on storage every worker's node can read (the same path on a cluster's shared filesystem). The
    workers always continue from a checkpoint found there (the caller decides whether one may be
    there), so a worker lost mid-run is replaced by Ray Train (``max_failures``) and the run goes
    on after the last finished epoch.

    Returns:
        Rank 0's :class:`~multi_agent_pruning.core.recovery.RecoveryResult`.

    Raises:
        PruningError: The run failed (after ``max_failures`` restarts).
    """
    import json

    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from multi_agent_pruning.core.recovery import RecoveryResult

    storage = storage_path or tempfile.mkdtemp(prefix="mapruner-recovery-")
    loop_config = {
        "model": ray.put(model.cpu()), "teacher": ray.put(teacher.cpu()) if teacher is not None else None,
        "train": ray.put(train_dataset), "val": ray.put(val_dataset), "config": config.model_dump(),
        "checkpoint_dir": str(checkpoint_dir), "gradient_checkpointing": settings.gradient_checkpointing,
    }
    trainer = TorchTrainer(
        _recovery_worker, train_loop_config=loop_config,
        torch_config=TorchConfig(backend=settings.backend),
        scaling_config=ScalingConfig(num_workers=settings.world_size, use_gpu=settings.use_gpu,
                                     resources_per_worker={"CPU": settings.cpus_per_worker}),
        run_config=RunConfig(name=f"recovery-{os.getpid()}-{id(model)}", storage_path=storage,
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    result = trainer.fit()
    if result.error is not None or result.checkpoint is None:
        raise PruningError(f"data-parallel recovery failed: {result.error}")
    with result.checkpoint.as_directory() as directory:
        state = load_file(os.path.join(directory, "model.safetensors"))
        with open(os.path.join(directory, "result.json")) as handle:
            summary = json.load(handle)
    model.load_state_dict(state)
    model.eval()
    return RecoveryResult(**summary)


def _recovery_worker(loop_config: dict[str, Any]) -> None:
    import dataclasses
    import json

    import ray
    import ray.train
    import ray.train.torch
    from torch.utils.data import DistributedSampler

    from multi_agent_pruning.core.recovery import RecoveryConfig, recover

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    config = RecoveryConfig(**loop_config["config"])
    model = ray.get(loop_config["model"])
    if loop_config["gradient_checkpointing"]:
        set_gradient_checkpointing(model)
    teacher = ray.get(loop_config["teacher"]) if loop_config["teacher"] is not None else None
    train, val = ray.get(loop_config["train"]), ray.get(loop_config["val"])

    def train_loader_for(epoch: int) -> DataLoader:
        sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=config.seed,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(train, batch_size=config.batch_size, sampler=sampler,
                          drop_last=len(sampler) > config.batch_size)

    result = recover(model, train_loader_for, DataLoader(val, batch_size=256), config,
                     checkpoint_dir=loop_config["checkpoint_dir"], teacher=teacher, resume=True,
                     device=ray.train.torch.get_device(), parallel=ray.train.torch.prepare_model,
                     writer=rank == 0)
    metrics = {"epochs": result.epochs, "top1": result.top1, "world_size": world}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      os.path.join(tmp, "model.safetensors"))
            with open(os.path.join(tmp, "result.json"), "w") as handle:
                json.dump({**dataclasses.asdict(result), "world_size": world}, handle)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)
