"""Evidence that a GPU smoke run (benchmarks/gpu_smoke.sh) ran its trials at once and on the GPU.

Two independent sources: the result table of the run (``started_at``/``finished_at`` of every
trial give the largest number of trials that overlapped in time) and ``nvidia-smi`` samples
taken during the run (the largest number of processes holding GPU memory at one instant, and
their peak memory). The check passes when every expected trial finished ``ok``, at least two
overlapped, and at least two processes used the GPU at the same time.

Sample file format, as written by gpu_smoke.sh: a line ``@<unix seconds>`` starts a sample, then
the CSV lines of ``nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader``
(``1234, 812 MiB``).

Usage:
    .venv/bin/python benchmarks/gpu_smoke.py --run-dir OUT/gpu_smoke --samples OUT/gpu_samples.txt \\
        --trials 4 [--out OUT]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GpuSample", "check", "format_report", "max_overlap", "parse_gpu_samples", "smoke_report"]

CONTEXTS_MIB = 2 * 250.0


@dataclass
class GpuSample:
    """One nvidia-smi sample: time, MiB per compute process, MiB used and top utilisation (all GPUs)."""

    time: float
    apps: dict[int, float] = field(default_factory=dict)
    memory_used_mib: float = 0.0
    utilization: float = 0.0


def max_overlap(intervals: Iterable[tuple[dt.datetime | float | None, dt.datetime | float | None]]) -> int:
    """The largest number of intervals open at one instant.

    Intervals are closed at the start and open at the end: one that ends exactly when another
    starts does not overlap it. Intervals missing either end (a trial that never started) are
    skipped.
    """
    events = []
    for start, end in intervals:
        if start is None or end is None:
            continue
        events += [(start, 1), (end, -1)]
    events.sort(key=lambda event: (event[0], event[1]))  # at equal times, ends (-1) before starts
    open_now = best = 0
    for _, step in events:
        open_now += step
        best = max(best, open_now)
    return best


def parse_gpu_samples(text: str) -> list[GpuSample]:
    """The samples of the sampler's file (lines that are neither kind, e.g. errors, are skipped)."""
    samples: list[GpuSample] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("@"):
            samples.append(GpuSample(time=float(line[1:])))
            continue
        parts = [part.strip() for part in line.split(",")]
        if not samples or len(parts) < 2:
            continue
        sample = samples[-1]
        if parts[0] == "gpu" and len(parts) == 4 and parts[2].isdigit() and parts[3].isdigit():
            sample.utilization = max(sample.utilization, float(parts[2]))
            sample.memory_used_mib += float(parts[3])
        elif parts[0].isdigit() and parts[1].split()[0].isdigit():
            sample.apps[int(parts[0])] = float(parts[1].split()[0])
    return samples


def smoke_report(run_dir: str | Path, samples: list[GpuSample], trials: int) -> dict:
    """Counts from the result table of ``run_dir`` and the GPU samples."""
    from multi_agent_pruning.results import ResultStore

    table = ResultStore(Path(run_dir) / "results").to_pandas()
    ok = table[table["status"] == "ok"]
    times = [(r.started_at, r.finished_at) for r in ok.itertuples()]
    peak_by_pid: dict[int, float] = {}
    for sample in samples:
        for pid, memory in sample.apps.items():
            peak_by_pid[pid] = max(peak_by_pid.get(pid, 0.0), memory)
    return {
        "trials_expected": trials, "rows": len(table), "rows_ok": len(ok),
        "statuses": table["status"].value_counts().to_dict(),
        "errors": [e for e in table["error"].dropna().tolist()][:5],
        "max_overlapping_trials": max_overlap(times),
        "trial_seconds": [round((e - s).total_seconds(), 2) for s, e in times if s is not None and e is not None],
        "gpu_samples": len(samples),
        "max_gpu_processes": max((len(sample.apps) for sample in samples), default=0),
        "gpu_peak_mib_by_pid": peak_by_pid,
        "gpu_memory_first_mib": samples[0].memory_used_mib if samples else None,
        "gpu_memory_peak_mib": max((sample.memory_used_mib for sample in samples), default=None),
        "gpu_utilization_peak": max((sample.utilization for sample in samples), default=None),
        "best_top1_after": None if ok.empty else float(ok["top1_after"].max()),
    }


def check(report: dict) -> list[str]:
    """The failed conditions (empty when the smoke test passed)."""
    problems = []
    if report["rows_ok"] != report["trials_expected"]:
        problems.append(f"{report['rows_ok']} of {report['trials_expected']} trials finished ok "
                        f"(statuses {report['statuses']})")
    if report["max_overlapping_trials"] < 2:
        problems.append(f"trials did not overlap (at most {report['max_overlapping_trials']} at once)")
    if report["max_gpu_processes"] == 0 and report["gpu_samples"]:
        rise = report["gpu_memory_peak_mib"] - report["gpu_memory_first_mib"]
        if rise < CONTEXTS_MIB:
            problems.append(f"nvidia-smi lists no GPU process and GPU memory rose only {rise:.0f} MiB "
                            f"(< {CONTEXTS_MIB:.0f} MiB, two CUDA contexts)")
    elif report["max_gpu_processes"] < 2:
        problems.append(f"nvidia-smi saw at most {report['max_gpu_processes']} process(es) on the GPU at once")
    return problems


def format_report(report: dict, problems: list[str]) -> str:
    """A short human-readable report."""
    lines = [
        (f"trials ok:              {report['rows_ok']} of {report['trials_expected']} (rows {report['rows']}, "
         f"statuses {report['statuses']})"),
        f"max overlapping trials: {report['max_overlapping_trials']} (from started_at/finished_at)",
        f"trial seconds:          {report['trial_seconds']}",
        f"max GPU processes:      {report['max_gpu_processes']} at once, in {report['gpu_samples']} nvidia-smi samples",
        f"peak GPU MiB by pid:    {report['gpu_peak_mib_by_pid']}",
        (f"GPU memory used:        {report['gpu_memory_first_mib']} MiB first sample, "
         f"{report['gpu_memory_peak_mib']} MiB peak; peak utilisation {report['gpu_utilization_peak']} %"),
        f"best top1_after:        {report['best_top1_after']}",
    ]
    if report["max_gpu_processes"] == 0 and report["gpu_samples"]:
        lines.append("note: nvidia-smi listed no process (container PID namespace?); GPU use is judged by memory")
    lines += [f"error: {e}" for e in report["errors"]]
    lines.append("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a GPU smoke run: overlap and GPU use of its trials.")
    parser.add_argument("--run-dir", required=True, help="the --output-dir of the mapruner prune run")
    parser.add_argument("--samples", required=True, help="the nvidia-smi sample file")
    parser.add_argument("--trials", type=int, default=4, help="trials the run was asked for")
    parser.add_argument("--out", help="directory for gpu_smoke_report.txt and .json")
    args = parser.parse_args(argv)
    report = smoke_report(args.run_dir, parse_gpu_samples(Path(args.samples).read_text()), args.trials)
    problems = check(report)
    text = format_report(report, problems)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "gpu_smoke_report.txt").write_text(text + "\n")
        Path(args.out, "gpu_smoke_report.json").write_text(
            json.dumps({**report, "problems": problems}, indent=2, default=str) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
