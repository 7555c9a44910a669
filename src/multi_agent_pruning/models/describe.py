"""Measured size and cost of registered models: the table behind ``mapruner models``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from multi_agent_pruning.models.registry import create_model, get_model_spec, list_models
from multi_agent_pruning.utils.metrics import compute_macs, compute_params

__all__ = ["describe_models", "format_model_table"]


def describe_models(names: Iterable[str] | None = None, input_size: int | None = None) -> list[dict[str, Any]]:
    """Counts parameters and MACs of each model with random (not pretrained) weights.

    Models are built on the ``meta`` device, so even ViT-Base costs no weight memory and
    counting the whole registry takes a few seconds.

    Args:
        names: Registry or timm names; None describes every registered model.
        input_size: Image side in pixels; None uses each model's default input size.

    Returns:
        One row per model: ``name``, ``timm_name`` (None for our own models), ``input_size``
        (C, H, W), ``params`` (int) and ``macs`` (float, one image).
    """
    rows = []
    for name in list_models() if names is None else list(names):
        spec = get_model_spec(name)
        channels, height, width = spec.input_size
        shape = (channels, input_size, input_size) if input_size else (channels, height, width)
        model = create_model(name, input_size=input_size, device="meta")
        rows.append(
            {
                "name": name,
                "timm_name": spec.timm_name,
                "input_size": shape,
                "params": compute_params(model),
                "macs": compute_macs(model, (1, *shape)),
            }
        )
    return rows


def _number(value: float) -> str:
    # The small dataset models cost a few MMACs; two decimals would show them as 0.00.
    return f"{value:.2f}" if value >= 0.1 else f"{value:.4f}"


def format_model_table(rows: Iterable[dict[str, Any]]) -> str:
    """Plain-text table with columns name, timm id, input, params (M), GMACs."""
    header = ("name", "timm id", "input", "params (M)", "GMACs")
    body = [
        (
            row["name"],
            row["timm_name"] or "-",
            "x".join(str(d) for d in row["input_size"]),
            _number(row["params"] / 1e6),
            _number(row["macs"] / 1e9),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    numeric = {3, 4}

    def render(line: tuple[str, ...]) -> str:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in body)])
