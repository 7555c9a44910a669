"""Sections describing the search: ``target``, ``search``, ``strategy_defaults``, ``finetune``,
``evaluation``, ``baselines``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ._base import ConfigModel, cross_field_error

__all__ = [
    "TargetConfig",
    "parse_target_number",
    "SearchConfig",
    "StrategyDefaults",
    "FinetuneConfig",
    "EvaluationConfig",
    "BaselinesConfig",
]

DEFAULT_REDUCTION = 0.5


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_target_number(value: Any) -> Any:
    """``"2.3G"`` -> 2.3e9, ``"1.5M MACs"`` -> 1.5e6, ``"0.5"`` -> 0.5; anything else unchanged
    (validation then says what is wrong with it)."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower().removesuffix("macs").strip()
    scale = _SUFFIX.get(text[-1:], 1.0) if text else 1.0
    try:
        return float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        return value


class TargetConfig(ConfigModel):
    """What the pruned model must meet: one target (``reduction`` or ``budget``) or a ``sweep`` searched in one run.

    A sweep is the accuracy-MACs frontier: its targets share one profile, one Ray Tune run and one
    results table (docs/agents.md, "Searching a frontier").
    """

    kind: Literal["macs", "params"] = Field("macs", description="Quantity the target constrains.")
    reduction: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Fraction of the dense model's MACs/params to remove; 0.5 when neither budget nor sweep is set.",
    )
    budget: float | None = Field(
        None, gt=0.0, description="Absolute MACs or parameter count to keep, e.g. 2.61e9."
    )
    sweep: tuple[float, ...] | None = Field(
        None,
        description="Several targets searched in one run (instead of reduction/budget): fractions removed in "
                    "(0, 1), e.g. [0.3, 0.5, 0.7, 0.8], or counts to keep, e.g. [2.3e9, 1.2e9] or [2.3G, 1.2G]; "
                    "all of one sort, at least two, distinct. Stored easiest first.",
    )
    tolerance: float = Field(
        0.005, gt=0.0, le=0.1, description="Accepted relative miss of the target (0.005 = 0.5%)."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_reduction(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("sweep"), (list, tuple)):
            data = {**data, "sweep": [parse_target_number(v) for v in data["sweep"]]}
        if isinstance(data.get("budget"), str):
            data = {**data, "budget": parse_target_number(data["budget"])}
        if data.get("reduction") is None and data.get("budget") is None and data.get("sweep") is None:
            return {**data, "reduction": DEFAULT_REDUCTION}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> TargetConfig:
        if self.reduction is not None and self.budget is not None:
            values = {"reduction": self.reduction, "budget": self.budget}
            raise cross_field_error([((), "set exactly one of reduction and budget", values)])
        if self.sweep is None:
            return self
        problems: list[tuple[tuple[str, ...], str, Any]] = []
        if self.reduction is not None or self.budget is not None:
            problems.append(((), "set either sweep or one of reduction and budget, not both",
                             {"sweep": list(self.sweep), "reduction": self.reduction, "budget": self.budget}))
        values = list(self.sweep)
        fractions = [v for v in values if 0 < v < 1]
        counts = [v for v in values if v >= 1]
        if len(values) < 2:
            problems.append((("sweep",), "needs at least two targets (use reduction or budget for one)", values))
        elif len(set(values)) != len(values):
            problems.append((("sweep",), "targets must be distinct", values))
        if len(fractions) + len(counts) != len(values):
            problems.append((("sweep",), "every target must be > 0: a fraction removed in (0, 1) or a count to keep "
                                         ">= 1", values))
        elif fractions and counts:
            problems.append((("sweep",), "must be all fractions removed (in (0, 1)) or all counts to keep (>= 1), "
                                         "not a mix", values))
        if problems:
            raise cross_field_error(problems)
        # Easiest first: fewest removed (fractions ascending, counts descending).
        ordered = tuple(sorted(values, reverse=bool(counts)))
        if ordered != self.sweep:
            object.__setattr__(self, "sweep", ordered)
        return self

    @property
    def is_sweep(self) -> bool:
        """Several targets in one run."""
        return self.sweep is not None

    def points(self) -> list[TargetConfig]:
        """Each target of the run as a single-target config, easiest first (one for a plain target)."""
        if self.sweep is None:
            return [self]
        key = "reduction" if self.sweep[0] < 1 else "budget"
        return [TargetConfig(kind=self.kind, tolerance=self.tolerance, **{key: value}) for value in self.sweep]

    def describe(self) -> str:
        """Short human description, e.g. ``remove 50% of MACs``, ``keep 2.61e+09 MACs`` or
        ``sweep: remove 30%, 50%, 70% of MACs``."""
        unit = "MACs" if self.kind == "macs" else "params"
        if self.sweep is not None:
            if self.sweep[0] < 1:
                return "sweep: remove " + ", ".join(f"{v:.0%}" for v in self.sweep) + f" of {unit}"
            return "sweep: keep " + ", ".join(f"{v:.3g}" for v in self.sweep) + f" {unit}"
        if self.budget is not None:
            return f"keep {self.budget:.3g} {unit}"
        return f"remove {self.reduction:.0%} of {unit}"


class SearchConfig(ConfigModel):
    """Budget and control of the multi-agent search loop."""

    trials: int = Field(16, ge=1, description="Total number of trials (strategies evaluated).")
    max_iterations: int = Field(4, ge=1, description="Most propose/evaluate rounds of the master agent.")
    batch_size: int | None = Field(
        None, ge=1, description="Strategies proposed per round; null = the larger of the search's width "
        "(max_concurrent_trials) and ceil(trials / max_iterations)."
    )
    convergence_threshold: float = Field(
        0.005, ge=0.0, description="Stop when the best accuracy improves by less than this per round."
    )
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Trials in flight at once: the search's width (its smallest batch, and how far "
        "a reproducible search reveals results out of order). Tune starts those that fit and keeps the rest "
        "pending, which an autoscaler sees as demand. null: the trials that fit in the local cluster mapruner "
        "starts, or the batch size on a joined cluster (set it there to the trials you want at once)."
    )
    max_failures: int = Field(1, ge=0, description="Retries of a crashed trial (Ray FailureConfig).")
    reuse_actors: bool = Field(True, description="Reuse Ray trial actors between trials.")
    reproducible: bool = Field(
        True,
        description="The master (and Optuna) learn trial results in the order the trials were issued, "
        "so a seed gives the same search whatever the timing; a free slot may wait for an earlier "
        "trial. false = learn each result as it arrives (no waiting, order depends on timing).",
    )
    trial_timeout_s: float | None = Field(
        21600.0,
        gt=0.0,
        description="Wall-clock limit of one trial (prune + fine-tune + evaluate); a trial past it ends as "
        "a failed row with error_type TrialTimeoutError; null: no limit.",
    )
    policy: Literal["builtin", "llm", "auto"] = Field(
        "auto",
        description="Who proposes strategies; auto = llm when an API key or llm.base_url is set.",
    )
    scheduler: Literal["fifo", "asha"] = Field(
        "fifo",
        description="fifo: every trial fine-tunes its strategy's budget once. asha: multi-fidelity search with Ray "
        "Tune's ASHAScheduler: every trial reports after each rung (1, reduction_factor, reduction_factor**2, ... "
        "times its strategy's fine-tune budget in all), continuing the same model and optimizer; the scheduler stops "
        "the trials below the top 1/reduction_factor of a rung (docs/agents.md, 'Multi-fidelity search').",
    )
    rungs: int = Field(3, ge=2, le=6, description="asha: rungs per trial (3: 1x, 3x and 9x with reduction_factor 3).")
    reduction_factor: int = Field(
        3, ge=2, le=8, description="asha: budget multiple between rungs; the top 1/reduction_factor is promoted."
    )

    def rung_budgets(self) -> tuple[int, ...] | None:
        """asha: each rung's fine-tune budget as a multiple of the strategy's (1, 3, 9); fifo: None."""
        if self.scheduler != "asha":
            return None
        return tuple(self.reduction_factor**k for k in range(self.rungs))


class StrategyDefaults(ConfigModel):
    """Starting point for every strategy; agents and baselines may change any of it."""

    importance: str = Field(
        "taylor", description="Criterion ranking channels/heads: a name in core.importance.IMPORTANCE_REGISTRY."
    )
    global_pruning: bool = Field(True, description="Rank groups across layers instead of per layer.")
    isomorphic: bool = Field(True, description="Compare only structurally isomorphic groups.")
    round_to: int | None = Field(
        None, ge=1, description="Keep channel counts a multiple of this (e.g. 8 for tensor cores)."
    )
    iterative_steps: int = Field(1, ge=1, description="Reach the target in this many pruning steps.")
    head_pruning_ratio: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction of attention heads removed (ViTs)."
    )
    prune_num_heads: bool = Field(False, description="Remove whole attention heads.")
    prune_head_dims: bool = Field(True, description="Shrink the per-head dimension.")


class FinetuneConfig(ConfigModel):
    """Short recovery training of each pruned model (optimizer and schedule: agents.fine_tuning_agent)."""

    epochs: float = Field(1.0, ge=0.0, lt=1e4, description="Training epochs (fractions allowed).")
    steps: int | None = Field(None, ge=0, description="Optimizer steps; overrides epochs when set.")
    lr: float = Field(1e-3, gt=0.0, lt=10.0, description="Peak learning rate.")
    weight_decay: float = Field(0.05, ge=0.0, lt=10.0, description="Decoupled weight decay (not on biases/norms).")
    warmup_ratio: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of the steps spent in linear warm-up."
    )
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="Label smoothing of the loss.")
    kd_weight: float = Field(
        0.0, ge=0.0, le=1.0, description="Weight of distillation from the dense model (0 = off)."
    )
    kd_temperature: float = Field(1.0, gt=0.0, lt=1e3, description="Softmax temperature of distillation.")
    batch_size: int | None = Field(None, ge=1, description="Training batch size; null = dataset.batch_size.")
    amp: bool = Field(True, description="Mixed precision; only used on GPU.")
    gradient_clip: float | None = Field(None, gt=0.0, description="Clip the gradient norm; null = off.")


class EvaluationConfig(ConfigModel):
    """What is measured on every trial's model."""

    latency: bool = Field(True, description="Measure inference latency.")
    latency_repeats: int = Field(10, ge=1, description="Timed forward passes per latency measurement.")
    adaptive_bn_batches: int = Field(
        0, ge=0, description="Training batches used to re-estimate the BatchNorm statistics of each pruned model "
                             "before fine-tuning (adaptive BN, EagleEye); its top-1 then is stored as "
                             "top1_adaptive_bn, a cheap early signal whose ranking the report measures. 0 = off; "
                             "models without BatchNorm are not measured.")
    custom_metrics: tuple[str, ...] = Field(
        (), description="Names registered with utils.metrics.register_metric."
    )


class BaselinesConfig(ConfigModel):
    """The baseline methods ``mapruner compare`` runs next to the multi-agent search."""

    methods: tuple[str, ...] | None = Field(
        None,
        description="Methods `mapruner compare` runs; null = every method: multi_agent, each registered pruning "
                    "method (magnitude_l1, magnitude_l2, taylor, isomorphic, random and any registered with "
                    "register_method) and optuna_tpe.",
    )
    num_runs: int = Field(3, ge=1, description="Repeats per method, with different seeds.")
    trials_per_method: int | None = Field(
        None, ge=1, description="Trials per method and run; null = search.trials."
    )
