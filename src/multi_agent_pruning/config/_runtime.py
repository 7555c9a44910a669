"""Sections describing where and how things run: ``llm``, ``hardware``, ``ray``,
``precomputation``."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ._base import ConfigModel, cross_field_error
from ._secrets import looks_like_api_key

__all__ = [
    "LLMConfig",
    "DistributedConfig",
    "GPUConfig",
    "HardwareConfig",
    "RayConfig",
    "CacheSectionConfig",
    "ModelAnalysisCacheConfig",
    "PrecomputationConfig",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)\s*", re.IGNORECASE)
_OPENAI_MAX_BACKOFF_S = 8.0  # openai's longest wait between attempts without a Retry-After
_UNIT_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class LLMConfig(ConfigModel):
    """OpenAI-compatible LLM used by the agents (also accepted under the key ``openai``)."""

    model: str = Field("gpt-4o-mini", description="Model name sent to the API.")
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint (vLLM, Ollama, ...); null = api.openai.com."
    )
    api_key: SecretStr | None = Field(
        None, description="API key; discouraged in files, prefer api_key_env. Never written out."
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Name of the environment variable that holds the API key (the name, never the key).",
    )
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="Sampling temperature.")
    timeout: float = Field(30, gt=0.0, description=(
        "Seconds an attempt may wait to connect and for each read of the reply, then it is retried "
        "(a limit per read: total_timeout cuts a reply that trickles in)."))
    max_retries: int = Field(2, ge=0, description=(
        "Retries by the openai client of a timeout, a connection error or HTTP 408/409/429/5xx, after "
        "its backoff (0.5 s doubling, at most 8 s) or the server's Retry-After; none for a 429 of a "
        "spent quota or a Retry-After longer than the time left."))
    cache_dir: str | None = Field(None, description="Directory caching replies by request hash.")
    replay: bool = Field(False, description="Answer only from cache_dir; never call the API.")
    max_tokens: int = Field(2048, ge=1, description="Largest reply length in tokens.")
    max_reply_chars: int = Field(200_000, ge=1, description="Longer replies are rejected (then repaired once).")
    total_timeout: float | None = Field(None, gt=0.0, description=(
        "Seconds one proposal may spend on the LLM in all (attempts, retry waits and the repair "
        "request), a hard wall-clock limit; null = (max_retries + 1) * timeout + max_retries * 8."))
    max_finetune_factor: float = Field(4.0, gt=0.0, description=(
        "Largest fine-tuning budget a proposal may ask for, as a multiple of the finetune section's."))

    @field_validator("api_key", "api_key_env", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        # The loader masks this field's value in errors: what fails here is often the key itself.
        if value is not None and (not _ENV_NAME.fullmatch(value) or looks_like_api_key(value)):
            raise ValueError("must be the name of an environment variable (letters, digits and '_', "
                             "not starting with a digit), not the key itself")
        return value

    @model_validator(mode="after")
    def _replay_needs_cache(self) -> LLMConfig:
        if self.replay and self.cache_dir is None:
            raise cross_field_error([(("cache_dir",), "must be set when llm.replay is true", None)])
        return self

    def time_budget(self) -> float:
        """Seconds one proposal may spend on the LLM: ``total_timeout``, else the longest
        openai's retries take, ``(max_retries + 1) * timeout + max_retries * 8`` (its longest wait)."""
        if self.total_timeout is not None:
            return self.total_timeout
        return (self.max_retries + 1) * self.timeout + self.max_retries * _OPENAI_MAX_BACKOFF_S

    def resolve_api_key(self) -> str | None:
        """The explicit key, else the one in ``api_key_env``; None when neither is set."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None

    def is_configured(self) -> bool:
        """Whether the LLM can be asked: a key, a local ``base_url``, or replay from a cache."""
        return self.resolve_api_key() is not None or self.base_url is not None or self.replay


class DistributedConfig(ConfigModel):
    """Data-parallel training inside one trial (API reference ``hardware.distributed``)."""

    enabled: bool = Field(False, description="Train each trial with torch.distributed.")
    backend: Literal["nccl", "gloo"] = Field("nccl", description="nccl for GPUs, gloo for CPUs.")
    world_size: int = Field(1, ge=1, description="Processes per trial.")


class GPUConfig(ConfigModel):
    """GPU memory and precision settings (API reference ``hardware.gpu``)."""

    memory_limit: str | None = Field(None, description='Per-trial GPU memory cap, e.g. "40GB".')
    mixed_precision: bool = Field(True, description="Allow mixed precision; false turns finetune.amp off.")
    gradient_checkpointing: bool = Field(False, description="Checkpoint activations during fine-tuning.")

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.fullmatch(value):
            raise ValueError('must be a size such as "40GB", "512MiB" or "1.5TB"')
        return value

    def memory_limit_bytes(self) -> int | None:
        """``memory_limit`` in bytes (``"40GB"`` -> 40e9, ``"1GiB"`` -> 2**30), or None."""
        if self.memory_limit is None:
            return None
        match = _MEMORY.fullmatch(self.memory_limit)
        number, unit = match.groups()  # validated on construction
        return int(float(number) * _UNIT_BYTES[unit.lower()])


class HardwareConfig(ConfigModel):
    """Devices and per-trial resources."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs given to a local Ray; null = all.")
    num_gpus: float | None = Field(None, ge=0, description="GPUs given to a local Ray; null = all.")
    cpus_per_trial: float = Field(1, gt=0, description="CPUs reserved by each trial.")
    gpus_per_trial: float = Field(0, ge=0, description="GPUs reserved by each trial (fractions allowed).")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="Data-parallel training."
    )
    gpu: GPUConfig = Field(default_factory=GPUConfig, description="GPU settings.")

    @model_validator(mode="after")
    def _cpu_has_no_gpus(self) -> HardwareConfig:
        problems = []
        if self.device == "cpu" and self.gpus_per_trial > 0:
            problems.append((("gpus_per_trial",), "must be 0 when hardware.device is 'cpu'",
                             self.gpus_per_trial))
        if self.device == "cpu" and self.distributed.enabled and self.distributed.backend == "nccl":
            problems.append((("distributed", "backend"),
                             "nccl needs CUDA; use 'gloo' when hardware.device is 'cpu'", "nccl"))
        if problems:
            raise cross_field_error(problems)
        return self


class RayConfig(ConfigModel):
    """How to start or join Ray."""

    address: str | None = Field(
        None, description='null starts a local Ray; "auto" or "ray://host:10001" joins a cluster.'
    )
    dashboard_host: str = Field("127.0.0.1", description="Interface the dashboard listens on.")
    include_dashboard: bool = Field(False, description="Start the Ray dashboard.")
    temp_dir: str | None = Field(None, description="Ray's session directory; null = Ray default.")
    log_to_driver: bool = Field(False, description="Forward worker logs to the driver.")
    preload_modules: list[str] = Field(
        default_factory=lambda: ["ray.tune"],
        description=("Python modules every worker of the local Ray imports when it starts, before it "
                     "takes work (Ray's preload_python_modules). The prestarted workers import them "
                     "while mapruner profiles the model, so the first trials do not: with ray.tune "
                     "the search's start on 2 cores was 1.1-1.7 s shorter (BENCHMARKS.md, "
                     "orchestration overhead, runs S and T). [] turns it off. Adding "
                     "'multi_agent_pruning.search.tune_trial' would move the trial's torch/timm import "
                     "there too (memory in every worker). Applies to the Ray that mapruner starts; a "
                     "cluster you join keeps its own configuration."),
    )
    idle_worker_keep_s: float | None = Field(
        3600, ge=0,
        description=("Seconds an idle worker process of the local Ray is kept before Ray may stop it "
                     "(Ray's idle_worker_killing_time_threshold_ms; null keeps Ray's default of 1 s). "
                     "Ray stops idle workers when no CPU is free, and Tune takes a trial's CPUs (its "
                     "placement group) just before it starts the trial's actor: with Ray's 1 s the "
                     "raylet stopped the prestarted workers in that moment in 5 of 9 probes, and the "
                     "first trials started new processes instead (BENCHMARKS.md, orchestration "
                     "overhead). Applies to the Ray that mapruner starts; for a cluster you start, "
                     "set RAY_idle_worker_killing_time_threshold_ms in `ray start`'s environment."),
    )


class CacheSectionConfig(ConfigModel):
    """One on-disk cache."""

    enabled: bool = Field(True, description="Use this cache.")
    cache_duration: float = Field(3600, ge=0, description="Seconds an entry stays valid.")


class ModelAnalysisCacheConfig(CacheSectionConfig):
    """Cache of model profiles; they change less often than importance scores."""

    cache_duration: float = Field(7200, ge=0, description="Seconds an entry stays valid.")


class PrecomputationConfig(ConfigModel):
    """On-disk caches of expensive analyses, keyed by content hash."""

    enabled: bool = Field(True, description="Master switch of all caches below.")
    cache_dir: str = Field(".mapruner_cache", description="Cache directory.")
    model_analysis: ModelAnalysisCacheConfig = Field(
        default_factory=ModelAnalysisCacheConfig,
        description="Model profiles (architecture, groups, sensitivity).",
    )
