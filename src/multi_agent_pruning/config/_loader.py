"""Public entry points: load, override, serialise and summarise configurations."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from ..exceptions import ConfigIssue, ConfigurationError
from ._env import substitute_env
from ._experiment import SECTION_ALIASES, ExperimentConfig
from ._issues import issues_from_pydantic
from ._overrides import Overrides, overrides_to_tree
from ._secrets import mask_secrets, redact_tree
from ._yaml import deep_merge, load_tree, normalize_aliases, parent_paths

__all__ = ["load_config", "load_config_dict", "apply_overrides", "config_to_dict", "section_issues",
           "validate_config_file"]

logger = logging.getLogger(__name__)


def load_config(
    path: str | os.PathLike[str],
    overrides: Overrides = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> ExperimentConfig:
    """Load, merge, substitute, override and validate a YAML configuration.

    Args:
        path: YAML file; its ``extends`` files are resolved relative to it.
        overrides: ``["search.trials=3", ...]`` (values parsed as YAML) or ``{"search.trials": 3}``.
        environ: Variables for ``${VAR}`` references; defaults to ``os.environ``.

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigurationError: Unreadable file, bad YAML (file and line named), circular
            ``extends``, or -- all in one error -- every unknown key, bad value and unset
            environment variable.
    """
    issues: list[ConfigIssue] = []
    data = load_tree(Path(path), issues)
    return _finish(data, str(path), issues, overrides, environ)


def load_config_dict(
    data: Mapping[str, Any],
    source: str = "<dict>",
    overrides: Overrides = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> ExperimentConfig:
    """Validate an in-memory mapping exactly as :func:`load_config` validates a file.

    An ``extends`` key is resolved relative to the current directory.
    """
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source}: a configuration must be a mapping, got {type(data).__name__}")
    issues: list[ConfigIssue] = []
    tree = dict(data)
    parents = tree.pop("extends", None)
    normalize_aliases(tree, issues)
    merged: dict[str, Any] = {}
    for parent in parent_paths(parents, Path.cwd(), source):
        merged = deep_merge(merged, load_tree(parent, issues))
    tree = deep_merge(merged, tree)
    return _finish(tree, source, issues, overrides, environ)


def apply_overrides(cfg: ExperimentConfig, overrides: Overrides) -> ExperimentConfig:
    """A new configuration with ``overrides`` applied to ``cfg`` and validated again."""
    issues: list[ConfigIssue] = []
    layer, keys = _override_layer(overrides, issues)
    layer, failed = substitute_env(layer, os.environ, issues)
    data = deep_merge(cfg.model_dump(mode="python"), layer)
    return _validate(data, "<overrides>", issues, failed, keys)


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """JSON-safe mapping of every setting, without secrets.

    ``llm.api_key`` is omitted (``llm.api_key_env`` names its variable), and credentials in every
    URL-valued string -- ``llm.base_url``, ``ray.address``, dataset paths -- are redacted.
    """
    return redact_tree(cfg.model_dump(mode="json", exclude={"llm": {"api_key"}}))


def validate_config_file(path: str | os.PathLike[str]) -> str:
    """Validate a file and describe it in a few lines (for ``mapruner validate-config``).

    Raises:
        ConfigurationError: Same as :func:`load_config`.
    """
    cfg = load_config(path)
    dataset = cfg.effective_dataset()
    policy = "LLM" if cfg.llm_enabled() else "built-in"
    lines = [
        f"{path}: valid",
        f"  experiment: {cfg.experiment.name} (seed {cfg.experiment.seed}) -> {cfg.output_path()}",
        f"  model:      {cfg.model.name}{' (pretrained)' if cfg.model.pretrained else ''}",
        f"  dataset:    {dataset.name}{f' at {dataset.path}' if dataset.path else ''}",
        f"  target:     {cfg.target.describe()} (tolerance {cfg.target.tolerance:.1%})",
        f"  trials:     {cfg.search.trials} in at most {cfg.effective_search().max_iterations}"
        f" iterations, {policy} policy",
    ]
    return "\n".join(lines)


def _override_layer(overrides: Overrides, issues: list[ConfigIssue]) -> tuple[dict, set[str]]:
    layer, keys = overrides_to_tree(overrides, issues)
    normalize_aliases(layer, issues)
    for alias, name in SECTION_ALIASES.items():
        keys = {f"{name}{k[len(alias):]}" if k.split(".")[0] == alias else k for k in keys}
    return layer, keys


def _finish(
    data: dict[str, Any],
    source: str,
    issues: list[ConfigIssue],
    overrides: Overrides,
    environ: Mapping[str, str] | None,
) -> ExperimentConfig:
    layer, keys = _override_layer(overrides, issues)
    merged = deep_merge(data, layer)
    _warn_plaintext_key(merged, source)
    merged, failed = substitute_env(merged, os.environ if environ is None else environ, issues)
    return _validate(merged, source, issues, failed, keys)


def _validate(
    data: dict[str, Any], source: str, issues: list[ConfigIssue], skip: list[str], keys: set[str]
) -> ExperimentConfig:
    cfg = None
    try:
        cfg = ExperimentConfig.model_validate(data)
    except PydanticValidationError as err:
        issues.extend(issues_from_pydantic(err, skip, keys))
    if issues:
        issues = [_without_secrets(issue) for issue in issues]
        count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
        raise ConfigurationError(f"Invalid configuration {source} ({count}):", issues)
    logger.debug("Loaded configuration %s (experiment %s)", source, cfg.experiment.name)
    return cfg


def section_issues(section: str, model: type, values: Mapping[str, Any]) -> list[ConfigIssue]:
    """The problems of ``values`` as the config section ``section`` (a settings object built in
    code), reported as ``load_config`` reports them: keyed ``section.<field>``, unknown keys with
    suggestions from that section, secrets masked. Empty when valid."""
    try:
        _section_adapter(model).validate_python({section: dict(values)})
    except PydanticValidationError as err:
        return [_without_secrets(issue) for issue in issues_from_pydantic(err)]
    return []


@functools.cache
def _section_adapter(model: type) -> TypeAdapter:
    return TypeAdapter(dict[str, model])


def _without_secrets(issue: ConfigIssue) -> ConfigIssue:
    """The one place error values are cleaned: secret keys and pasted keys masked, URLs redacted."""
    return ConfigIssue(issue.path, issue.rule, mask_secrets(issue.path.rsplit(".", 1)[-1], issue.value))


def _warn_plaintext_key(data: Mapping[str, Any], source: str) -> None:
    llm = data.get("llm")
    key = llm.get("api_key") if isinstance(llm, Mapping) else None
    if isinstance(key, str) and key and "${" not in key:
        logger.warning("%s: llm.api_key is written in plain text; prefer llm.api_key_env", source)
