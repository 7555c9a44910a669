"""Strategies from the LLM: one proposal, its repair, and the fallback to the built-in policy.

:func:`propose_with_llm` asks the model (through :class:`~.llm_client.LLMClient`) for a batch of
strategies, checks the reply (:mod:`.llm_schema`) and asks once for a corrected reply when it is
unusable. It never raises for a service or reply problem: it returns outcome ``"fallback"``
with the reason, so the caller can use its built-in policy. Both requests of a proposal share
one deadline, :meth:`LLMConfig.time_budget` seconds from its start.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from multi_agent_pruning.agents.llm_client import LLMCallRecord, LLMClient, LLMReply, LLMServiceError, LLMSettings
from multi_agent_pruning.agents.llm_schema import (LLMReplyError, ParsedProposal, build_repair_messages,
                                                   build_strategy_messages, parse_strategy_reply, recovery_limits)
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import LLMError

# The names callers know from here (the client and the schema live in llm_client and llm_schema).
__all__ = ["LLMSettings", "LLMClient", "LLMReply", "LLMCallRecord", "LLMServiceError", "LLMReplyError",
           "LLMProposalOutcome", "ParsedProposal", "build_strategy_messages", "parse_strategy_reply",
           "propose_with_llm"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LLMProposalOutcome:
    """What :func:`propose_with_llm` got.

    ``outcome`` is ``"ok"``, ``"cached"``, ``"repaired"`` or ``"fallback"`` (then ``error`` says
    why and ``strategies`` is empty); ``records`` are the calls made, each with its own outcome;
    ``elapsed_s`` is the wall time of the whole proposal (at most the settings' time budget).
    """

    strategies: list[Strategy]
    reasoning: str
    outcome: str
    records: list[LLMCallRecord]
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0


def propose_with_llm(client: LLMClient, context: Mapping[str, Any], *, base: Strategy,
                     known_kinds: Collection[str], limits: Mapping[str, float], batch_size: int,
                     exclude_keys: Collection[str] = ()) -> LLMProposalOutcome:
    """Asks the model for a batch of strategies; repairs an invalid reply once.

    Both requests share one deadline, ``client.settings.time_budget()`` seconds from the call.
    The fine-tuning budget the model may ask for is bounded by ``base`` times
    ``client.settings.max_finetune_factor`` (see :func:`recovery_limits`); the prompt shows
    those bounds with the safety limits.

    Args:
        client: The LLM client; its records grow by one per call made here.
        context: Prompt context, see :func:`build_strategy_messages`.
        base, known_kinds, limits, batch_size, exclude_keys: See :func:`parse_strategy_reply`.

    Returns:
        Outcome ``"ok"``/``"cached"``/``"repaired"`` with the strategies, or ``"fallback"``
        with ``error`` and no strategies when the service or the replies failed.

    Raises:
        KeyboardInterrupt: Ctrl+C during a request or a retry wait.
    """
    started = time.monotonic()
    first = len(client.records)
    factor = client.settings.max_finetune_factor
    shown = {**(context.get("safety_limits") or {}), **recovery_limits(base, factor)}
    messages = build_strategy_messages({**context, "safety_limits": shown})
    check = dict(base=base, known_kinds=known_kinds, limits=limits, batch_size=batch_size,
                 exclude_keys=exclude_keys, max_finetune_factor=factor)
    outcome = _ask_with_repair(client, messages, check, first, started + client.settings.time_budget())
    elapsed = time.monotonic() - started
    if outcome.outcome == "fallback":
        logger.warning("LLM proposal failed after %.2fs (%s); falling back to the built-in policy",
                       elapsed, outcome.error)
    else:
        logger.info("LLM proposal %s in %.2fs", outcome.outcome, elapsed)
    return dataclasses.replace(outcome, elapsed_s=elapsed)


def _ask_with_repair(client: LLMClient, messages: list[dict[str, str]], check: dict[str, Any], first: int,
                     deadline: float) -> LLMProposalOutcome:
    try:
        return _ask(client, messages, check, first, deadline, repaired=False)
    except LLMServiceError as err:
        return _fallback(client, first, err)
    except LLMReplyError as err:
        logger.info("LLM reply unusable (%s): %s; asking once for a corrected reply", err.kind, err)
        repair = build_repair_messages(messages, err)
    try:
        return _ask(client, repair, check, first, deadline, repaired=True)
    except LLMError as err:
        return _fallback(client, first, err)


def _ask(client: LLMClient, messages: list[dict[str, str]], check: dict[str, Any], first: int,
         deadline: float, *, repaired: bool) -> LLMProposalOutcome:
    reply = client.complete(messages, deadline=deadline)
    try:
        parsed = parse_strategy_reply(reply.text, **check)
    except LLMReplyError as err:
        if reply.finish_reason == "length":  # cut off at max_tokens: say so, or the repair repeats it
            err = LLMReplyError(err.kind, f"{err} (the reply was cut off at the token limit; be brief)",
                                text=err.text, rejected=err.rejected)
        reply.record.outcome, reply.record.error = err.kind, str(err)
        raise err from None
    if repaired and not reply.cached:
        reply.record.outcome = "repaired"
    outcome = "repaired" if repaired else ("cached" if reply.cached else "ok")
    return LLMProposalOutcome(parsed.strategies, parsed.reasoning, outcome, client.records[first:],
                              parsed.rejected, parsed.warnings)


def _fallback(client: LLMClient, first: int, err: LLMError) -> LLMProposalOutcome:
    rejected = list(getattr(err, "rejected", []))
    return LLMProposalOutcome([], "", "fallback", client.records[first:], rejected, error=str(err))
