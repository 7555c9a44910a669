"""The parts of the GPU smoke test that need no GPU: the overlap count, the nvidia-smi sample
parser, the report from a real result table, and the script's refusal without a GPU."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from multi_agent_pruning.results import ResultStore, TrialResult
from support.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 1, 5, 9, 0, 0, tzinfo=dt.UTC)


gpu_smoke = load_benchmark("gpu_smoke")


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(("intervals", "expected"), [
    ([], 0),
    ([(0, 10)], 1),
    ([(0, 10), (10, 20), (20, 30)], 1),  # back to back: an end and a start at the same instant
    ([(0, 10), (5, 15), (6, 7), (14, 20)], 3),
    ([(0, 4), (1, 5), (2, 6), (3, 7)], 4),
    ([(0, 4), (1, 5), (None, 6), (3, None), (3.5, 9)], 3),  # never started / never finished: skipped
])
def test_max_overlap_counts_trials_open_at_one_instant(intervals, expected):
    assert gpu_smoke.max_overlap(intervals) == expected


def test_max_overlap_takes_datetimes():
    assert gpu_smoke.max_overlap([(_at(0), _at(3)), (_at(2.5), _at(4)), (_at(3), _at(5))]) == 2


SAMPLES = """\
@1767603600.00
gpu,0, 0, 3
@1767603600.50
4101, 612 MiB
gpu,0, 41, 615
@1767603601.00
4101, 640 MiB
4102, 598 MiB
4103, 600 MiB
gpu,0, 87, 1838
@1767603601.50
4102, 720 MiB
No devices were found
gpu,0, 12, 720
"""


def test_parse_gpu_samples_reads_processes_memory_and_utilisation():
    samples = gpu_smoke.parse_gpu_samples(SAMPLES)
    assert [s.time for s in samples] == [1767603600.0, 1767603600.5, 1767603601.0, 1767603601.5]
    assert [len(s.apps) for s in samples] == [0, 1, 3, 1]
    assert samples[2].apps == {4101: 640.0, 4102: 598.0, 4103: 600.0}
    assert [s.memory_used_mib for s in samples] == [3.0, 615.0, 1838.0, 720.0]
    assert samples[2].utilization == 87.0


def _write_table(root: Path, spans: list[tuple[float, float]], statuses: list[str]) -> None:
    rows = []
    for i, ((start, end), status) in enumerate(zip(spans, statuses, strict=True)):
        common = {"experiment": "quickstart", "run": 0, "method": "multi_agent", "model": "compact_cnn",
                  "dataset": "digits", "seed": 42, "trial_id": f"t{i}", "iteration": 0, "target_kind": "macs",
                  "started_at": _at(start)}
        if status == "ok":
            rows.append(TrialResult(**common, strategy_json=json.dumps({"importance": "taylor"}), status="ok",
                                    top1_after=0.9 + i / 100, finished_at=_at(end)))
        else:
            rows.append(TrialResult.failed(error="CUDA out of memory", **common, finished_at=_at(end)))
    ResultStore(root / "results").append(rows)


def test_report_of_four_overlapping_trials_on_the_gpu_passes(tmp_path):
    _write_table(tmp_path, [(0, 8), (0.2, 8.5), (0.4, 9), (0.5, 7)], ["ok"] * 4)
    report = gpu_smoke.smoke_report(tmp_path, gpu_smoke.parse_gpu_samples(SAMPLES), trials=4)
    assert report["rows_ok"] == 4
    assert report["max_overlapping_trials"] == 4
    assert report["max_gpu_processes"] == 3
    assert report["gpu_peak_mib_by_pid"] == {4101: 640.0, 4102: 720.0, 4103: 600.0}
    assert report["best_top1_after"] == pytest.approx(0.93)
    assert report["trial_seconds"] == [8.0, 8.3, 8.6, 6.5]
    assert gpu_smoke.check(report) == []
    assert gpu_smoke.format_report(report, []).endswith("PASS")


def test_report_of_serial_trials_and_a_failure_names_each_problem(tmp_path):
    _write_table(tmp_path, [(0, 2), (2, 4), (4, 6), (6, 8)], ["ok", "ok", "ok", "failed"])
    one_process = "@1.0\n4101, 600 MiB\ngpu,0, 50, 600\n"
    report = gpu_smoke.smoke_report(tmp_path, gpu_smoke.parse_gpu_samples(one_process), trials=4)
    problems = gpu_smoke.check(report)
    assert problems == [
        "3 of 4 trials finished ok (statuses {'ok': 3, 'failed': 1})",
        "trials did not overlap (at most 1 at once)",
        "nvidia-smi saw at most 1 process(es) on the GPU at once",
    ]
    assert report["errors"] == ["CUDA out of memory"]


def test_without_process_list_gpu_use_is_judged_by_memory(tmp_path):
    _write_table(tmp_path, [(0, 8), (1, 9)], ["ok", "ok"])
    risen = gpu_smoke.parse_gpu_samples("@1\ngpu,0, 0, 2\n@2\ngpu,0, 60, 1100\n")
    flat = gpu_smoke.parse_gpu_samples("@1\ngpu,0, 0, 2\n@2\ngpu,0, 0, 300\n")
    assert gpu_smoke.check(gpu_smoke.smoke_report(tmp_path, risen, trials=2)) == []
    assert gpu_smoke.check(gpu_smoke.smoke_report(tmp_path, flat, trials=2)) == [
        "nvidia-smi lists no GPU process and GPU memory rose only 298 MiB (< 500 MiB, two CUDA contexts)"]


def test_main_writes_the_report_files_and_exits_1_on_failure(tmp_path, capsys):
    _write_table(tmp_path / "run", [(0, 2), (2, 4)], ["ok", "ok"])
    samples = tmp_path / "samples.txt"
    samples.write_text("@1\n4101, 600 MiB\n4102, 600 MiB\ngpu,0, 50, 1200\n")
    code = gpu_smoke.main(["--run-dir", str(tmp_path / "run"), "--samples", str(samples), "--trials", "2",
                           "--out", str(tmp_path / "out")])
    assert code == 1
    text = (tmp_path / "out" / "gpu_smoke_report.txt").read_text()
    assert "max overlapping trials: 1" in text and "FAIL: trials did not overlap" in text
    saved = json.loads((tmp_path / "out" / "gpu_smoke_report.json").read_text())
    assert saved["max_gpu_processes"] == 2 and saved["problems"] == ["trials did not overlap (at most 1 at once)"]
    assert "FAIL" in capsys.readouterr().out


def _run_script(path_dirs: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join(str(p) for p in path_dirs)}
    script = str(ROOT / "benchmarks" / "gpu_smoke.sh")
    return subprocess.run([shutil.which("bash"), script], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def _tools_dir(tmp_path: Path) -> Path:
    """A PATH directory with the few tools the script needs before its GPU check, and no nvidia-smi."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("dirname", "grep"):
        (tools / name).symlink_to(shutil.which(name))
    return tools


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_script_without_nvidia_smi_fails_with_no_gpu_found(tmp_path):
    result = _run_script([_tools_dir(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip() == "gpu_smoke: no GPU found: nvidia-smi is not installed"


def test_script_with_a_failing_nvidia_smi_fails_with_no_gpu_found(tmp_path):
    tools = _tools_dir(tmp_path)
    # The message nvidia-smi prints when the driver is missing, with its exit status.
    (tools / "nvidia-smi").write_text("#!/bin/bash\necho 'NVIDIA-SMI has failed because it couldn'\"'\"'t "
                                      "communicate with the NVIDIA driver.'\nexit 9\n")
    (tools / "nvidia-smi").chmod(0o755)
    result = _run_script([tools])
    assert result.returncode == 2
    assert result.stderr.startswith("gpu_smoke: no GPU found: nvidia-smi failed: NVIDIA-SMI has failed")
