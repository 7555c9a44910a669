"""Ctrl+C and SIGTERM: stop a search cleanly, keep every stored row, and say so.

Ray Tune installs its own SIGINT handler in ``Tuner.fit()``: it ends the run and returns as if
the budget had been used, so a Ctrl+C looked like success. :func:`handle_stop_signals` replaces
that for the whole run (profiling, every search of a comparison, the report): the first SIGINT
or SIGTERM asks every running search to stop (:class:`InterruptStopper`, polled by Tune about
every 0.1 s; running trials are stopped and leave no row, so ``--resume`` runs them again); a
signal outside a search, or a second one, raises at once. Afterwards the caller raises
:class:`SearchInterrupted`, and the CLI exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

from ray import tune

logger = logging.getLogger(__name__)

__all__ = ["InterruptStopper", "SearchInterrupted", "handle_stop_signals", "raise_if_interrupted",
           "reclaim_signals", "requested", "searching"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"signum": None, "searching": 0, "depth": 0}


class SearchInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; the rows stored so far are kept.

    A :class:`KeyboardInterrupt` (not an ``Exception``), so no ``except Exception`` on the way
    up (Ray's, Tune's or ours) can mistake it for a failure and carry on.

    Attributes:
        signum: The signal received.
        exit_code: 128 + ``signum``: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + int(signum)
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def requested() -> int | None:
    """The stop signal received during this run, or None."""
    return _state["signum"]


def raise_if_interrupted() -> None:
    """Raises :class:`SearchInterrupted` when a stop signal arrived."""
    if _state["signum"] is not None:
        raise SearchInterrupted(_state["signum"])


class InterruptStopper(tune.Stopper):
    """Tune stopper: ends the whole search once a stop signal arrived."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return _state["signum"] is not None


@contextlib.contextmanager
def searching() -> Iterator[None]:
    """Marks a Tune search: a first signal inside it stops the search instead of raising."""
    # Tune would install its own SIGINT handler over ours for the length of fit().
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    reclaim_signals()
    _state["searching"] += 1
    try:
        yield
    finally:
        _state["searching"] -= 1


def _handle(signum: int, frame) -> None:
    first = _state["signum"] is None
    _state["signum"] = _state["signum"] or signum
    if first and _state["searching"]:
        logger.warning("%s received: stopping the search (rows stored so far are kept; "
                       "send it again to stop at once)", signal.Signals(signum).name)
        return
    raise SearchInterrupted(_state["signum"])


def reclaim_signals() -> bool:
    """Puts this module's handlers back while :func:`handle_stop_signals` is active.

    ``ray.init`` installs a SIGTERM handler of its own in the driver (``sys.exit(signum)``, and
    the core worker's C++ failure handler, which aborts the process: exit -6 instead of 143), so
    :func:`~multi_agent_pruning.orchestrator.ray_runtime.init_ray` calls this after it, and every
    search does when it starts. Returns True when the handlers were (re)installed.
    """
    if not _state["depth"] or threading.current_thread() is not threading.main_thread():
        return False
    for sig in _SIGNALS:
        if signal.getsignal(sig) is not _handle:
            logger.debug("%s handler replaced (by Ray?): installing the search's again", signal.Signals(sig).name)
        # Always: the C-level handler may have been replaced behind Python's back.
        signal.signal(sig, _handle)
    return True


@contextlib.contextmanager
def handle_stop_signals() -> Iterator[None]:
    """Installs the SIGINT/SIGTERM handlers for one run (main thread only; elsewhere a no-op).

    Nested uses (a comparison's searches) share the outermost one; a new outermost run starts
    with no signal recorded.
    """
    if threading.current_thread() is not threading.main_thread() or _state["depth"]:
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    _state["signum"] = None
    _state["depth"] += 1
    for sig in _SIGNALS:
        signal.signal(sig, _handle)
    try:
        yield
    finally:
        _state["depth"] -= 1
        signum, _state["signum"] = _state["signum"], None
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signum is not None:  # arrived after the run's last check
        raise SearchInterrupted(signum)
