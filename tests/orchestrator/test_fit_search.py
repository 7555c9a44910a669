"""``fit_search`` on a full disk: when the result store failed, whatever Tune raises on its way
out (it cannot write or read back its own state files either: an EOFError on the reference
machine) is only the consequence, and the user gets the store's error naming the disk."""

from __future__ import annotations

import pytest

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.orchestrator.tune_run import fit_search


class _Sink:
    def __init__(self, error=None):
        self.error = error


class _TunerFailingOnTheWayOut:
    def fit(self):
        raise EOFError("Ran out of input")


def test_the_store_error_wins_over_what_tune_raised_after_it():
    disk_full = ResultStoreError("could not write /out/results: disk full (No space left on device)")
    with pytest.raises(ResultStoreError, match="disk full") as caught:
        fit_search(_TunerFailingOnTheWayOut(), _Sink(disk_full))
    assert isinstance(caught.value.__cause__, EOFError)


def test_tune_errors_are_raised_as_they_are_when_the_store_is_fine():
    with pytest.raises(EOFError):
        fit_search(_TunerFailingOnTheWayOut(), _Sink())
