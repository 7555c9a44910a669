"""Runs example scripts, each in a fresh fork of one process that imported the heavy libraries once.

A script started as ``python script.py`` spends 5-7 s importing torch, timm, Ray, scipy and plotly
before its first line of work; 25 of them spend minutes. Here one process imports them (and does
nothing else: no torch op, no Ray, no thread pool), then forks a child per script. Each child starts
from that clean, already-imported state, runs the script as ``__main__`` with ``--small``, writes
its stdout/stderr to files and exits with the script's code, so scripts never see each other's
state (registries, caches in memory, Ray).

Usage: ``python -m support.fork_examples OUT_DIR SCRIPT...``; writes ``OUT_DIR/<script>.out``,
``.err``, ``OUT_DIR/codes.json`` (``{script: exit code}``; ``-N`` killed by signal N) and
``OUT_DIR/seconds.json`` (wall time per script).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time
import traceback
from pathlib import Path

#: Seconds a script may run before its child is stopped (SIGALRM: exit code -14).
LIMIT_S = 600

HEAVY = ("torch", "torchvision", "timm", "torch_pruning", "ray", "ray.tune", "optuna", "scipy.stats", "plotly",
         "pandas", "pyarrow", "sklearn.datasets", "multi_agent_pruning.orchestrator", "multi_agent_pruning.baselines",
         "multi_agent_pruning.validation", "multi_agent_pruning.agents", "multi_agent_pruning.tools")


def _child(script: Path, out: Path) -> int:
    with open(out / f"{script.name}.out", "w") as stdout, open(out / f"{script.name}.err", "w") as stderr:
        os.dup2(stdout.fileno(), 1)
        os.dup2(stderr.fileno(), 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    sys.argv = [str(script), "--small"]
    sys.path.insert(0, str(script.parent))
    signal.alarm(LIMIT_S)
    try:
        runpy.run_path(str(script), run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception of `python script.py`
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main(out: Path, scripts: list[Path]) -> None:
    import importlib

    for name in HEAVY:
        importlib.import_module(name)
    codes: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for script in scripts:
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(script, out))
        _, status = os.waitpid(pid, 0)
        codes[script.name] = os.waitstatus_to_exitcode(status)
        seconds[script.name] = round(time.perf_counter() - start, 2)
    (out / "codes.json").write_text(json.dumps(codes, indent=1))
    (out / "seconds.json").write_text(json.dumps(seconds, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
