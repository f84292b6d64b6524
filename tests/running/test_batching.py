"""run_batches: halving on out-of-memory, the same indices retried, failures and cancellation as
the last outcome, and prepare's errors left to the caller."""

from __future__ import annotations

import numpy as np
import pytest

from ptytui.errors import InputError
from ptytui.running.batching import Batch, BatchCancelled, BatchFailed, BatchHalved, run_batches


def fits_up_to(limit):
    """A run that needs more memory than there is above ``limit`` indices (MemoryError is OOM)."""
    def run(chunk):
        if len(chunk) > limit:
            raise MemoryError(f"batch of {len(chunk)}")
        return chunk * 10
    return run


def test_out_of_memory_halves_and_retries_the_same_indices():
    outcomes = list(run_batches(np.arange(10), 8, fits_up_to(3)))
    assert [(o.old, o.new) for o in outcomes if isinstance(o, BatchHalved)] == [(8, 4), (4, 2)]
    batches = [o for o in outcomes if isinstance(o, Batch)]
    assert np.array_equal(np.concatenate([b.indices for b in batches]), np.arange(10))
    assert np.array_equal(np.concatenate([b.result for b in batches]), np.arange(10) * 10)
    assert [b.done for b in batches] == [2, 4, 6, 8, 10]


def test_out_of_memory_at_batch_one_and_other_errors_fail_the_run():
    outcomes = list(run_batches(np.arange(4), 1, fits_up_to(0)))
    assert len(outcomes) == 1 and isinstance(outcomes[0], BatchFailed)
    assert isinstance(outcomes[0].error, MemoryError) and outcomes[0].done == 0

    def broken(chunk):
        raise ValueError("not memory")
    outcomes = list(run_batches(np.arange(4), 4, broken))
    assert len(outcomes) == 1 and isinstance(outcomes[0].error, ValueError)


def test_cancellation_ends_the_run_between_batches():
    seen = []
    for outcome in run_batches(np.arange(10), 3, fits_up_to(3), cancelled=lambda: len(seen) == 2):
        seen.append(outcome)
    assert isinstance(seen[-1], BatchCancelled) and seen[-1].done == 6


def test_prepare_errors_propagate_unchanged():
    def prepare(chunk):
        raise InputError("batch", "good input", "bad input")
    with pytest.raises(InputError):
        list(run_batches(np.arange(4), 2, fits_up_to(4), prepare=prepare))
