"""The LLM tokens a proposal spent reach the rows of its strategies (``llm_prompt_tokens`` /
``llm_completion_tokens``), also when the analysis agent rejected or clamped some of them.
The end-to-end check against a loopback server: tests/reliability/test_llm_failure_modes.py."""

from __future__ import annotations

import json

from multi_agent_pruning.agents.analysis import Verdict
from multi_agent_pruning.agents.master import llm_token_columns, llm_token_shares
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.results.trial import TrialResult, strategy_columns
from multi_agent_pruning.search.searcher import MasterSearcher

IDS = {"experiment": "tok", "run": 0, "method": "multi_agent", "model": "tiny", "dataset": "digits", "seed": 0}


class _Call:  # the attributes llm_token_shares reads from an LLM call record
    def __init__(self, attempts, prompt_tokens, completion_tokens):
        self.attempts, self.prompt_tokens, self.completion_tokens = attempts, prompt_tokens, completion_tokens


def _searcher(rows):
    return MasterSearcher(None, None, profile={}, target={"kind": "macs", "reduction": 0.5, "budget": None},
                          base=Strategy(target_reduction=0.5), budget=10, batch_size=3, identifiers=IDS,
                          history=[], record=rows.append)


def _report(strategy: Strategy, trial_id: str) -> dict:
    row = TrialResult(**IDS, trial_id=trial_id, iteration=0, **strategy_columns(strategy), top1_after=0.9,
                      status="ok")
    return {"row_json": json.dumps(row.to_row(), default=str)}


def test_tokens_follow_approved_clamped_and_rejected_strategies():
    proposed = [Strategy(importance="l1", target_reduction=0.5), Strategy(importance="l2", target_reduction=0.5),
                Strategy(importance="fpgm", target_reduction=0.5, group_multipliers={"mlp": 3.0})]
    # Two calls reached the service (a reply and its repair); a cached one cost nothing.
    shares = llm_token_shares([_Call(1, 600, 20), _Call(1, 301, 10), _Call(0, 999, 999)], proposed)
    clamped = Strategy(importance="fpgm", target_reduction=0.5, group_multipliers={"mlp": 1.5})
    assert clamped.key() != proposed[2].key()
    checked = Verdict(approved=[proposed[0], clamped], rejected=[{"strategy": proposed[1], "reasons": ["too aggressive"]}],
                      changes=[], mode="warn", safety_checks={})
    rows: list[TrialResult] = []
    searcher = _searcher(rows)
    # As MasterSearcher._next_batch does with the analysis agent's answer:
    searcher._record_rejected(checked.rejected[0], 0, llm_token_columns(shares, checked.rejected[0]["strategy"]))
    searcher.queue = list(checked.approved)
    searcher._remember_tokens(shares, proposed, checked)
    for index, strategy in enumerate(list(searcher.queue)):
        searcher.running[f"t{index}"] = (strategy, 0)
        searcher.on_trial_complete(f"t{index}", _report(strategy, f"t{index}"))
    tokens = {r.trial_id: (r.llm_prompt_tokens, r.llm_completion_tokens) for r in rows}
    # 901 prompt and 30 completion tokens over three strategies, the remainder to the first ones.
    assert tokens == {"rejected-0-0": (300, 10), "t0": (301, 10), "t1": (300, 10)}
    assert sum(p for p, _ in tokens.values()) == 901 and sum(c for _, c in tokens.values()) == 30
    assert searcher.tokens == {}  # forgotten once their rows are recorded


def test_builtin_strategies_and_dead_workers_carry_no_tokens():
    rows: list[TrialResult] = []
    searcher = _searcher(rows)
    strategy = Strategy(importance="taylor", target_reduction=0.5)
    searcher.running["t0"] = (strategy, 0)
    searcher.on_trial_complete("t0", None, error=True)  # worker died: a failed row, still no tokens
    assert [(r.status, r.llm_prompt_tokens, r.llm_completion_tokens) for r in rows] == [("failed", None, None)]
