"""The stop-signal handlers survive ``ray.init``: Ray installs its own SIGTERM handler in the
driver (``sys.exit``, and the core worker's C++ handler, which aborts the process), so a SIGTERM
during a search ended the run with exit -6 instead of a clean stop (CI, 2026-12-05)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from multi_agent_pruning.config import load_config_dict
    from multi_agent_pruning.search import interrupt
    from multi_agent_pruning.orchestrator.ray_runtime import init_ray

    cfg = load_config_dict({"hardware": {"device": "cpu", "num_cpus": 1},
                            "ray": {"temp_dir": sys.argv[1], "preload_modules": []}})
    try:
        with interrupt.handle_stop_signals():
            assert init_ray(cfg)
            print("handler after ray.init:", signal.getsignal(signal.SIGTERM) is interrupt._handle, flush=True)
            with interrupt.searching():
                os.kill(os.getpid(), signal.SIGTERM)  # a search notes it and goes on to stop cleanly
                time.sleep(0.2)
                print("requested:", interrupt.requested(), flush=True)
            interrupt.raise_if_interrupted()
    except interrupt.SearchInterrupted as stop:
        print("exit code:", stop.exit_code, flush=True)
        sys.exit(stop.exit_code)
""")


def test_sigterm_after_ray_init_stops_the_search_cleanly():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    with tempfile.TemporaryDirectory(prefix="mr-sig-", dir="/tmp") as temp_dir:
        done = subprocess.run([sys.executable, "-c", SCRIPT, temp_dir], env=env, capture_output=True, text=True,
                              timeout=180)
    assert done.returncode == 143, done.stdout + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.split(":")[0] in ("handler after ray.init",
                                                                                 "requested", "exit code")]
    assert lines == ["handler after ray.init: True", "requested: 15", "exit code: 143"], done.stdout
