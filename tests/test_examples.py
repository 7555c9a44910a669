"""Every script in examples/ runs in small mode (``--small``) and prints what the API reference
says it prints, with plausible values (docs/api.md).

The quick scripts run in ``make test``, each in a fresh fork of one process that imported the
libraries once (tests/support/fork_examples.py); so does 01_prune_model.py, a real search on a
local Ray cluster (about 40 s). The comparison (02) and the paper validator (17) take about a
minute each and are marked slow (``make test-slow``). A new example without an entry in
``EXPECTED`` fails ``test_every_example_is_tested``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

_PCT = r"\d+\.\d%"

#: script -> patterns its standard output must contain (re.MULTILINE).
EXPECTED: dict[str, list[str]] = {
    "01_prune_model.py": [r"^Achieved (49\.\d|50\.\d)% reduction$", rf"^Final accuracy: {_PCT}$"],
    "02_compare_methods.py": [rf"^multi_agent: {_PCT} accuracy$", rf"^magnitude_l1: {_PCT} accuracy$",
                              rf"^taylor: {_PCT} accuracy$"],
    "03_profiling_agent.py": [r"^Architecture: vit$", r"^Prunable layers: [1-9]\d*$",
                              r"^Safety limits: \{'max_overall_pruning': 0\.8,"],
    "04_master_agent.py": [r"^Recommended ratio: 0\.50$", r"^Importance criterion: \w+$", r"^Continue: True$"],
    "05_analysis_agent.py": [r"^Approved: 1, rejected: 1$",
                             r"^Rejected: target removes 95\.0% of macs, above max_overall_pruning=0\.8$"],
    "06_pruning_agent.py": [r"^MACs: 12\.26M -> 6\.\d\dM \((49\.\d|50\.\d)% removed\)$"],
    "07_fine_tuning_agent.py": [r"^Fine-tuned 30 steps, final loss \d+\.\d{3}$"],
    "08_evaluation_agent.py": [rf"^Top-1: {_PCT}, MACs: 12\.26M, params: 0\.31M, latency: \d+\.\d\d ms$"],
    "09_dependency_analyzer.py": [r"^Prunable layers: [1-9]\d*$", r"^Coupling constraints: [1-9]\d*$",
                                  r"^First constraint: \d+ layer dimensions .* must be pruned with the same indices",
                                  r"^Coupled with blocks\.0\.mlp\.fc1: \['blocks\.0\.mlp\.fc2'\]$"],
    "10_isomorphic_analyzer.py": [r"^mlp:\d+: \d+ members, \d+\.\d% of prunable MACs, ratio 0\.50$",
                                  r"^Ratios with group_ratios: \{.*'attention:\d+': 0\.2\b"],
    "11_timing_profiler.py": [r"^training took 0\.\d\d s$", r"^timer +total s +count +share$",
                              *(rf"^Timers: \[.*'{name}'.*\]$" for name in ("model_loading", "training", "operation_name"))],
    "12_load_config.py": [r"^Experiment: enhanced_multi_agent \(seed 42\)$",
                          r"^Model: deit_small on imagenet at \S+$", r"^Target: macs budget 2\.3e\+09$"],
    "13_config_structure.py": [r"^ImageNet: /path/to/imagenet, batch 256$",
                               r"^Safety limits: mlp 0\.15, attention 0\.1$",
                               r"^Master agent: 5 iterations, threshold 0\.005$",
                               r"^LLM key from \$OPENAI_API_KEY: set \(shown as \*+\)$"],
    "14_magnitude_pruning.py": [rf"^magnitude_l1: 6\.\d\dM MACs, final accuracy {_PCT}$"],
    "15_taylor_pruning.py": [rf"^taylor: 6\.\d\dM MACs, final accuracy {_PCT}$"],
    "16_isomorphic_original.py": [rf"^isomorphic: 6\.\d\dM MACs, final accuracy {_PCT}$"],
    "17_paper_reproduction_validator.py": [r"^isomorphic_deit_4\.2g: skipped \(ImageNet not found",
                                           r"^depgraph_resnet56_cifar10: skipped \(model 'resnet56'",
                                           r"^Analysed \d+ trials of \['magnitude_l1', 'multi_agent'\]$",
                                           r"^examples_small multi_agent: best top-1 \d+\.\d% over 1 run\(s\)$",
                                           r"^Wrote \S+report\.html$"],
    "18_metrics.py": [r"^Model MACs: 0\.04G$", r"^Model parameters: 0\.4M$"],
    "19_pruning_error.py": [r"^Pruning failed: Impossible target:$",
                            r"target\.reduction: must keep at least .* \(got 0\.995\)$"],
    "20_configuration_error.py": [r"^Configuration error: Invalid configuration invalid_config\.yaml "
                                  r"\(3 problems\):$",
                                  r"search\.trials: must be >= 1 \(got 0\)$",
                                  r"serach: unknown key; did you mean 'search'\?"],
    "21_validation_error.py": [r"^Validation failed: .*Unknown method 'magnitude_l3'"],
    "22_custom_agent.py": [r"^Role: Custom pruning agent$", r"'custom_result': 'value'",
                           r"^Parsed: confidence 0\.8, reasoning 'Prune the MLPs first\.'$"],
    "23_custom_pruning_method.py": [rf"^custom_method: 6\.\d\dM MACs, final accuracy {_PCT}$",
                                    r"^Registered methods: \[.*'custom_method'"],
    "24_distributed_training.py": [r"^Distributed: enabled=True, backend=gloo, world_size=2$",
                                   r"^GPU: memory limit 37\.3 GiB, mixed precision True, "
                                   r"gradient checkpointing True$"],
    "25_custom_metrics.py": [r"^custom_efficiency: 25\.\d\d M params per GMAC$"],
    "26_memory_optimization.py": [r"agents\.pruning_agent\.memory_efficient: removed",
                                  r"agents\.pruning_agent\.gradient_checkpointing: removed"
                                  r".*hardware\.gpu\.gradient_checkpointing",
                                  r"agents\.pruning_agent\.batch_processing: removed",
                                  r"^gradient_checkpointing=True, amp=True$"],
    "27_caching_configuration.py": [r"precomputation\.importance_scores: removed",
                                    r"^Profile cache: enabled=True, directory=\./cache, lifetime=7200 s$"],
    "28_model_downloader.py": [r"^deit_small: (ok|failed)", r"^resnet50: (ok|failed)", r"^convnext_tiny: (ok|failed)"],
}

#: Compare methods or run the paper validator: a minute each on two cores (``make test-slow``).
#: 01_prune_model.py also starts a local Ray cluster and searches, but is the headline: in ``make test``.
SLOW = {"02_compare_methods.py", "17_paper_reproduction_validator.py"}
SEARCH = {"01_prune_model.py"}


def _scripts() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@dataclass(frozen=True)
class Workspace:
    """Where the examples run: their working directory and Ray's temp directory."""

    cwd: Path
    ray_tmp: Path


def _env(place: Workspace) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_TMPDIR": str(place.ray_tmp), "TMPDIR": str(place.ray_tmp), "PYTHONUNBUFFERED": "1"}
    env.pop("MAPRUNER_EXAMPLES_SMALL", None)
    return env


def _run(script: str, place: Workspace, *args: str, small_env: bool = False) -> subprocess.CompletedProcess:
    env = _env(place)
    if small_env:
        env["MAPRUNER_EXAMPLES_SMALL"] = "1"
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=place.cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[Workspace]:
    """One working directory for all examples, so the dense-model and profile caches are shared,
    and a short Ray temp directory (Ray's socket paths must stay under 107 characters)."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="mapr-ex-"))
    yield Workspace(tmp_path_factory.mktemp("examples"), ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_every_example_is_tested():
    assert _scripts() == sorted(EXPECTED), "add the new example to EXPECTED (and SLOW if it searches)"
    assert SLOW | SEARCH <= set(EXPECTED)


QUICK = sorted(set(EXPECTED) - SLOW - SEARCH)


def _check(script: str, code: int, stdout: str, stderr: str) -> None:
    assert code == 0, f"{script} exited {code}\n{stdout[-3000:]}\n{stderr[-5000:]}"
    for pattern in EXPECTED[script]:
        assert re.search(pattern, stdout, re.MULTILINE), f"{script}: no line matches {pattern!r}:\n{stdout}"


@pytest.fixture(scope="module")
def quick_outcomes(workspace) -> dict[str, tuple[int, str, str]]:
    """Every quick example, each in a fresh fork of one process that imported the libraries once
    (tests/support/fork_examples.py): the same isolation as ``python script.py --small`` without
    paying 5-7 s of imports per script."""
    out = workspace.cwd / "outcomes"
    out.mkdir()
    support = Path(__file__).resolve().parent
    env = {**_env(workspace), "PYTHONPATH": os.pathsep.join([str(support), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "support.fork_examples", str(out),
                           *(str(EXAMPLES / s) for s in QUICK)], cwd=workspace.cwd, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    codes = json.loads((out / "codes.json").read_text())
    return {s: (codes[s], (out / f"{s}.out").read_text(), (out / f"{s}.err").read_text()) for s in QUICK}


@pytest.mark.parametrize("script", QUICK)
def test_example_runs_in_small_mode(script, quick_outcomes):
    _check(script, *quick_outcomes[script])


@pytest.mark.parametrize("script", [*sorted(SEARCH), *(pytest.param(s, marks=pytest.mark.slow) for s in sorted(SLOW))])
def test_search_example_runs_in_small_mode(script, workspace):
    proc = _run(script, workspace, "--small")
    _check(script, proc.returncode, proc.stdout, proc.stderr)


def test_environment_variable_switches_small_mode_on(workspace):
    proc = _run("18_metrics.py", workspace, small_env=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Model MACs: 0.04G" in proc.stdout  # timm's test_vit at 160 px, not DeiT-Small's 4.61G
