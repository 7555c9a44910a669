"""A real search (``mapruner prune`` with the LLM policy) against a hostile OpenAI-compatible
server on 127.0.0.1: every proposal of the search meets a different failure mode, and each one
ends in the built-in policy within the configured time bound (issue 18, items 2 to 4).

The modes, one per master proposal (batch size 1, ``llm.max_retries=1``, ``llm.timeout=1``):
HTTP 200 with an HTML body, a JSON envelope without choices, a server that never answers, one
that drips a byte every 0.2 s (each read succeeds: only the deadline of the proposal ends it),
HTTP 429 asking to retry in 2 s (openai waits as asked), HTTP 500 forever, and a reply asking
for 10^8 fine-tuning steps (twice: the reply and its repair). The last proposal gets a good
reply, to show the LLM path still works after all that and that its tokens reach the result
table.

The bound per proposal is ``LLMSettings.time_budget()``: ``(max_retries + 1) * timeout +
max_retries * 8`` (openai's longest wait between attempts) = 2 * 1 + 1 * 8 = 10 s (the drip
proposal takes all of it).
Each proposal's wall time is read from the master's own log line ("LLM proposal failed after
X s") and, independently, from the times the server received its requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from multi_agent_pruning.agents.llm import LLMSettings
from support.llm_server import (
    CHAT_PATH,
    OpenAICompatibleServer,
    drip,
    hang,
    raw_body,
    reply_json,
    status,
)

pytestmark = pytest.mark.slow

HUGE = {"strategies": [{"importance": "l2", "finetune_steps": 100_000_000}], "reasoning": "train for ever"}
GOOD = {"strategies": [{"importance": "fpgm", "global_pruning": False, "learning_rate": 0.0123}],
        "reasoning": "after the faults"}
# (mode, scripted answers of its proposal, start of the error the proposal falls back with)
MODES = (
    ("200 with an HTML body", [raw_body("<html><body>502 Bad Gateway</body></html>")],
     "unreadable response from the LLM service: JSONDecodeError"),
    ("JSON without choices", [raw_body('{"choices": []}')],
     "unreadable response from the LLM service: no message in the completion"),
    ("no answer", [hang(), hang()], "no reply within 1s (after 2 attempt(s))"),
    ("drip", [drip(reply_json(GOOD), every_s=0.2)],
     "no reply within the time budget of 10s (llm.total_timeout) (after 1 attempt(s))"),
    ("429, retry in 2 s", [status(429, headers={"Retry-After": "2"})] * 2, "HTTP 429"),
    ("500 forever", [status(500)] * 2, "HTTP 500"),
    ("10^8 fine-tuning steps", [reply_json(HUGE, prompt_tokens=700, completion_tokens=30)] * 2,
     "no valid strategy: finetune_steps 100000000 exceeds the limit 20 (4 x the configured budget 5)"),
)
SETTINGS = LLMSettings(base_url="http://127.0.0.1:1/v1", timeout=1.0, max_retries=1)
BOUND_S = SETTINGS.time_budget()
SLACK_S = 1.5  # Python and Ray scheduling on two busy cores
_PROPOSAL = re.compile(r"LLM proposal failed after ([0-9.]+)s \((.*)\); falling back")


@dataclass
class HostileRun:
    run: object
    requests: list
    proposals: list[tuple[float, str]]  # (seconds, error) from the master's log, in order


@pytest.fixture(scope="module")
def hostile_run(run_prune) -> HostileRun:
    with OpenAICompatibleServer(model="test-model") as server:
        for _, answers, _ in MODES:
            server.script(*answers)
        server.script(reply_json(GOOD, prompt_tokens=901, completion_tokens=17))
        run = run_prune("llm-hostile", trials=len(MODES) + 1, settings={
            "search.policy": "llm", "search.batch_size": "1", "search.max_iterations": "20",
            "llm.base_url": server.base_url, "llm.model": "test-model",
            "llm.timeout": str(SETTINGS.timeout), "llm.max_retries": str(SETTINGS.max_retries)})
        requests = [r for r in server.requests if r.path == CHAT_PATH]
    logs = run.stderr + "".join(p.read_text(errors="replace") for p in sorted(run.ray_dir.rglob("*.err")))
    proposals = [(float(seconds), error) for seconds, error in _PROPOSAL.findall(logs)]
    return HostileRun(run, requests, _unique(proposals))


def _unique(proposals):
    """Each log line once (Ray forwards the actor's stderr to the driver, and keeps its file)."""
    seen, kept = set(), []
    for item in proposals:
        if item not in seen:
            seen.add(item)
            kept.append(item)
    return kept


def test_hostile_llm_search_finishes_with_builtin_trials(hostile_run):
    run = hostile_run.run
    assert run.returncode == 0, run.explain()
    rows = sorted(run.rows(), key=lambda r: r.iteration)
    assert len(rows) == len(MODES) + 1 and {r.status for r in rows} == {"ok"}
    assert all(r.top1_after is not None for r in rows)
    # The 10^8 steps never reached a trial: every built-in trial kept the configured 5 steps.
    assert max(r.finetune_steps for r in rows) == 5
    # The last proposal came from the LLM again.
    assert (rows[-1].importance, rows[-1].global_pruning, rows[-1].learning_rate) == ("fpgm", False, 0.0123)


def test_every_failure_mode_fell_back_within_the_bound(hostile_run):
    # Every scripted answer was used, in order: one proposal per mode, then the good reply.
    assert len(hostile_run.requests) == sum(len(answers) for _, answers, _ in MODES) + 1
    errors = [error for _, error in hostile_run.proposals]
    assert len(errors) == len(MODES), errors
    for (mode, _, expected), (seconds, error) in zip(MODES, hostile_run.proposals):
        assert error.startswith(expected), (mode, error)
        assert seconds <= BOUND_S + SLACK_S, (mode, seconds)
    assert BOUND_S == 10.0
    # Wall time seen by the server: the requests of one proposal span less than its bound.
    index = 0
    for mode, answers, _ in MODES:
        first, last = hostile_run.requests[index], hostile_run.requests[index + len(answers) - 1]
        assert last.received_at - first.received_at <= BOUND_S, mode
        index += len(answers)
    # The slow modes really waited (no shortcut that skips the retry or the deadline): hang, drip, 429.
    seconds = dict(zip((m for m, _, _ in MODES), (s for s, _ in hostile_run.proposals)))
    assert seconds["no answer"] >= 2.0 and seconds["drip"] >= BOUND_S - 0.1 and seconds["429, retry in 2 s"] >= 2.0


def test_llm_rows_carry_the_tokens_of_their_proposal(hostile_run):
    rows = sorted(hostile_run.run.rows(), key=lambda r: r.iteration)
    # The built-in policy's trials spent no LLM tokens of their own; the LLM's trial carries
    # what its proposal cost (one request: 901 prompt and 17 completion tokens).
    assert [(r.llm_prompt_tokens, r.llm_completion_tokens) for r in rows[:-1]] == [(None, None)] * len(MODES)
    assert (rows[-1].llm_prompt_tokens, rows[-1].llm_completion_tokens) == (901, 17)
