"""Recovery training: budget, schedule, losses, KD, determinism and failure modes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from multi_agent_pruning.config import FinetuneConfig, FineTuningAgentConfig, load_config_dict
from multi_agent_pruning.core.evaluation import evaluate
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.core.training import (
    FineTuneConfig,
    NonFiniteLossError,
    distillation_loss,
    fine_tune,
    lr_multiplier,
)
from multi_agent_pruning.data import create_loaders
from multi_agent_pruning.exceptions import ConfigurationError, MultiAgentPruningError


def _toy_loader(batches: int, batch_size: int = 4, features: int = 6, classes: int = 3, **kwargs) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batches * batch_size, features, generator=generator)
    y = torch.randint(0, classes, (batches * batch_size,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, **kwargs)


def _mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(256, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def test_lr_schedule_warmup_then_cosine_at_known_steps():
    model = nn.Linear(6, 3)
    config = FineTuneConfig(steps=10, lr=1.0, warmup_ratio=0.2, weight_decay=0.0, scheduler="cosine")
    result = fine_tune(model, _toy_loader(3), config, device="cpu")
    # warm-up of 2 steps (1/2, 2/2), then 0.5 * (1 + cos(pi * k / 8)) for k = 0..7
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert result.lr_history == pytest.approx(expected, abs=1e-12)
    assert result.lr_history[4] == pytest.approx(0.8535533905932737)
    assert result.lr_history[6] == pytest.approx(0.5)


@pytest.mark.parametrize(("scheduler", "expected"), [
    ("step", [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]),
    ("none", [1.0] * 8),
])
def test_step_and_constant_schedules(scheduler, expected):
    assert [lr_multiplier(s, 8, 0, scheduler) for s in range(8)] == pytest.approx(expected)
    result = fine_tune(nn.Linear(6, 3), _toy_loader(2), FineTuneConfig(
        steps=8, lr=0.5, warmup_ratio=0.0, scheduler=scheduler, optimizer="sgd"), device="cpu")
    assert result.lr_history == pytest.approx([0.5 * e for e in expected])


def test_label_smoothing_changes_first_loss_by_the_known_amount():
    # Constant logits [2, 0, 0] for every sample, labels all 0: the loss is known in closed form.
    x = torch.zeros(4, 6)
    loader = DataLoader(TensorDataset(x, torch.zeros(4, dtype=torch.long)), batch_size=4)
    log_z = math.log(math.exp(2) + 2)
    plain, eps = log_z - 2, 0.1
    smoothed = (1 - eps + eps / 3) * (log_z - 2) + 2 * (eps / 3) * log_z
    for smoothing, expected in ((0.0, plain), (eps, smoothed)):
        model = nn.Linear(6, 3)
        with torch.no_grad():
            model.weight.zero_()
            model.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
        result = fine_tune(model, loader, FineTuneConfig(steps=1, label_smoothing=smoothing), device="cpu")
        assert result.loss_history[0] == pytest.approx(expected, rel=1e-6)


def test_epochs_and_steps_budgets_give_exact_step_counts():
    loader = _toy_loader(7)
    calls = []
    result = fine_tune(nn.Linear(6, 3), loader, FineTuneConfig(epochs=2.5), device="cpu", progress=True,
                       on_step=lambda step, loss, lr: calls.append(step))
    assert result.steps == 18 == len(result.loss_history) == len(result.lr_history)  # round(17.5)
    assert calls == list(range(1, 19))
    assert result.epochs == pytest.approx(18 / 7)
    result = fine_tune(nn.Linear(6, 3), loader, FineTuneConfig(epochs=3, steps=5), device="cpu")
    assert (result.steps, result.epochs) == (5, pytest.approx(5 / 7))
    assert FineTuneConfig(epochs=0.01).total_steps(7) == 1


def test_zero_budget_is_a_no_op_and_leaves_eval_mode():
    model = nn.Sequential(nn.Linear(6, 3))
    before = copy.deepcopy(model.state_dict())
    for config in (FineTuneConfig(steps=0), FineTuneConfig(epochs=0)):
        model.train()
        result = fine_tune(model, _toy_loader(2), config, device="cpu")
        assert (result.steps, result.final_loss, result.mean_loss, result.loss_history) == (0, None, None, [])
        assert not model.training
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_same_seed_same_history_other_seed_differs():
    def run(seed):
        torch.manual_seed(123)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
        rng = torch.get_rng_state()
        result = fine_tune(model, _toy_loader(4, shuffle=True), FineTuneConfig(steps=12, lr=0.01), seed=seed,
                           device="cpu")
        assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
        return result.loss_history

    first = run(0)
    assert run(0) == first
    assert run(1) != first


class ExplodesAtCall(nn.Module):
    """A linear classifier whose output turns infinite on its n-th forward call."""

    def __init__(self, call: int) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)
        self.call, self.calls = call, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.linear(x)
        return out * float("inf") if self.calls == self.call else out


def test_non_finite_loss_raises_with_the_step():
    model = ExplodesAtCall(3)
    with pytest.raises(NonFiniteLossError, match=r"at step 3 of 10") as info:
        fine_tune(model, _toy_loader(5), FineTuneConfig(steps=10), device="cpu")
    assert isinstance(info.value, MultiAgentPruningError)
    assert not model.training


def test_gradient_clip_bounds_the_first_sgd_update():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    loader = DataLoader(TensorDataset(torch.randn(8, 6) * 100, torch.randint(0, 3, (8,))), batch_size=8)
    before = [p.detach().clone() for p in model.parameters()]
    fine_tune(model, loader, FineTuneConfig(steps=1, lr=0.1, warmup_ratio=0.0, weight_decay=0.0,
                                            optimizer="sgd", gradient_clip=0.01), device="cpu")
    change = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]).norm()
    assert float(change) == pytest.approx(0.1 * 0.01, rel=1e-4)  # lr * clipped norm


def test_distillation_loss_values():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(distillation_loss(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-7)
    t = 2.0
    p_t = F.softmax(teacher / t, dim=1)
    expected = float((p_t * (p_t.log() - F.log_softmax(student / t, dim=1))).sum(dim=1).mean()) * t * t
    assert float(distillation_loss(student, teacher, t)) == pytest.approx(expected, rel=1e-6)
    assert expected > 0.1


def test_kd_mix_of_first_step_matches_hand_computation(digits):
    torch.manual_seed(0)
    student, teacher = nn.Sequential(nn.Flatten(), nn.Linear(256, 10)), nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    config = FineTuneConfig(steps=1, kd_weight=0.3, kd_temperature=2.0, label_smoothing=0.0)
    x, y = next(iter(create_loaders(digits, batch_size=32, seed=5)[0]))
    with torch.no_grad():
        expected = 0.7 * F.cross_entropy(student(x), y) + 0.3 * distillation_loss(student(x), teacher(x), 2.0)
    train_loader, _ = create_loaders(digits, batch_size=32, seed=5)
    result = fine_tune(student, train_loader, config, teacher=teacher, device="cpu")
    assert result.loss_history[0] == pytest.approx(float(expected), rel=1e-5)


def test_kd_fine_tune_lowers_loss_on_digits(digits):
    torch.manual_seed(0)
    teacher = _mlp(64)
    fine_tune(teacher, create_loaders(digits, batch_size=64, seed=0)[0],
              FineTuneConfig(steps=60, lr=1e-2, warmup_ratio=0.0), device="cpu")
    _, val_loader = create_loaders(digits, batch_size=128)
    fixed = [next(iter(val_loader))]
    assert evaluate(teacher, fixed)["top1"] > 0.9

    torch.manual_seed(1)
    student = _mlp(16)
    before = evaluate(student, fixed)["loss"]
    with torch.no_grad():
        kd_before = float(distillation_loss(student(fixed[0][0]), teacher(fixed[0][0]), 2.0))
    result = fine_tune(student, create_loaders(digits, batch_size=64, seed=1)[0],
                       FineTuneConfig(steps=30, lr=1e-2, kd_weight=0.5, kd_temperature=2.0), teacher=teacher,
                       device="cpu")
    after = evaluate(student, fixed)["loss"]
    with torch.no_grad():
        kd_after = float(distillation_loss(student(fixed[0][0]), teacher(fixed[0][0]), 2.0))
    assert result.steps == 30 and not student.training and not teacher.training
    assert after < 0.5 * before
    assert kd_after < 0.5 * kd_before
    assert result.mean_loss < result.loss_history[0]


def test_kd_weight_without_teacher_is_rejected():
    with pytest.raises(ConfigurationError, match=r"finetune.kd_weight: needs a teacher"):
        fine_tune(nn.Linear(6, 3), _toy_loader(2), FineTuneConfig(steps=2, kd_weight=0.5), device="cpu")


def test_config_validation_reports_every_problem():
    with pytest.raises(ConfigurationError) as info:
        FineTuneConfig(optimizer="adam", scheduler="linear", lr=0.0, warmup_ratio=1.5, gradient_clip=-1.0)
    text = str(info.value)
    for key in ("finetune.optimizer", "finetune.scheduler", "finetune.lr", "finetune.warmup_ratio",
                "finetune.gradient_clip"):
        assert key in text
    assert len(info.value.issues) == 5


def test_from_strategy_maps_fields_and_applies_overrides():
    strategy = Strategy(finetune_epochs=2.0, finetune_steps=30, learning_rate=2e-4, weight_decay=0.01, kd_weight=0.4)
    config = FineTuneConfig.from_strategy(strategy, label_smoothing=0.0, lr=5e-4)
    assert (config.epochs, config.steps, config.lr, config.weight_decay, config.kd_weight, config.label_smoothing) == (
        2.0, 30, 5e-4, 0.01, 0.4, 0.0)
    with pytest.raises(ConfigurationError, match=r"finetune.warmup: unknown key; did you mean 'warmup_ratio'"):
        FineTuneConfig.from_strategy(strategy, warmup=0.1)


def test_fine_tune_config_is_the_config_section():
    cfg = load_config_dict({"finetune": {"lr": 0.02}, "agents": {"fine_tuning_agent": {"optimizer": "sgd",
                                                                                      "scheduler": "step"}}})
    config = FineTuneConfig(**cfg.finetune.model_dump(), **cfg.agents.fine_tuning_agent.model_dump())
    rebuilt = FineTuneConfig(**config.model_dump())  # as Ray Train's workers rebuild it from a dict
    assert rebuilt == config and (rebuilt.lr, rebuilt.optimizer, rebuilt.scheduler) == (0.02, "sgd", "step")
    assert issubclass(FineTuneConfig, FinetuneConfig) and issubclass(FineTuneConfig, FineTuningAgentConfig)
    # The section's fields, the agent's optimizer and schedule, and log_every: each declared once.
    assert FineTuneConfig.model_fields.keys() == (FinetuneConfig.model_fields.keys()
                                                  | FineTuningAgentConfig.model_fields.keys() | {"log_every"})
    with pytest.raises(ConfigurationError) as info:
        FineTuneConfig(lr=float("nan"), steps=True, log_every=-1)
    assert [issue.path for issue in info.value.issues] == ["finetune.steps", "finetune.lr", "finetune.log_every"]


def test_empty_loader_is_an_error():
    empty = DataLoader(TensorDataset(torch.zeros(0, 6), torch.zeros(0, dtype=torch.long)), batch_size=2)
    with pytest.raises(ConfigurationError, match="train_loader: must yield at least one batch"):
        fine_tune(nn.Linear(6, 3), empty, FineTuneConfig(steps=3), device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_amp_on_cuda_uses_reduced_precision_and_still_learns(digits):
    torch.manual_seed(0)
    model = _mlp(64)
    result = fine_tune(model, create_loaders(digits, batch_size=64, seed=0)[0],
                       FineTuneConfig(steps=40, lr=1e-2, gradient_clip=1.0), device="cuda")
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert (result.precision, result.device) == (expected, "cuda")
    assert all(p.is_cuda and p.dtype == torch.float32 for p in model.parameters())
    assert result.mean_loss < result.loss_history[0]
    assert evaluate(model, create_loaders(digits, batch_size=256)[1], device="cuda")["top1"] > 0.8
    loader = create_loaders(digits, batch_size=64)[0]
    off = fine_tune(_mlp(8), loader, FineTuneConfig(steps=2, amp=False), device="cuda")
    assert off.precision == "float32"


def test_deadline_stops_a_huge_budget_between_steps():
    from multi_agent_pruning.core.evaluation import Deadline
    from multi_agent_pruning.exceptions import TrialTimeoutError

    model, steps = nn.Linear(6, 3), []
    deadline = Deadline(0.5, stage="fine-tune")
    with pytest.raises(TrialTimeoutError, match=r"0\.5 s .* in stage fine-tune") as caught:
        fine_tune(model, _toy_loader(3), FineTuneConfig(steps=10**8, lr=1e-3), device="cpu",
                  on_step=lambda step, loss, lr: steps.append(step), deadline=deadline)
    assert caught.value.elapsed_s >= 0.5 and caught.value.stage == "fine-tune"
    assert 0 < len(steps) < 10**8 and steps == list(range(1, len(steps) + 1))  # stopped between two steps
    assert not model.training  # left in eval mode, as after any error


def test_deadline_without_limit_changes_nothing():
    from multi_agent_pruning.core.evaluation import Deadline

    config = FineTuneConfig(steps=12, lr=1e-2)
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    twin = copy.deepcopy(model)
    plain = fine_tune(model, _toy_loader(3), config, device="cpu", seed=3)
    limited = fine_tune(twin, _toy_loader(3), config, device="cpu", seed=3, deadline=Deadline(None))
    assert limited.steps == plain.steps == 12 and limited.loss_history == plain.loss_history
    assert torch.equal(model.weight, twin.weight)


def test_gradient_checkpointing_is_turned_on_where_the_model_supports_it(caplog):
    """hardware.gpu.gradient_checkpointing reaches the single-process fine-tune (it used to be read
    only on the data-parallel path)."""
    import logging

    import timm

    from multi_agent_pruning.agents import FineTuningAgent
    from multi_agent_pruning.core import Strategy
    from multi_agent_pruning.core.training import set_gradient_checkpointing

    vit = timm.create_model("test_vit", num_classes=3, img_size=32)
    assert not vit.grad_checkpointing
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 3, (8,))
    FineTuningAgent({"gradient_checkpointing": True}).execute(
        {"model": vit, "train_loader": [(x, y)], "strategy": Strategy(finetune_steps=1), "device": "cpu"})
    assert vit.grad_checkpointing is True
    caplog.set_level(logging.WARNING)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    assert set_gradient_checkpointing(plain) is False and set_gradient_checkpointing(plain) is False
    assert [r.getMessage() for r in caplog.records] == [
        "gradient checkpointing asked for, but Sequential has no set_grad_checkpointing(); training without it"]
