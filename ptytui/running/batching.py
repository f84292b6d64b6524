"""The one batch loop that halves the batch on out-of-memory: a device call run over consecutive
batches of indices, checking for cancellation between batches.

Inference (``inference.run_inference``) and the comparison (``quality.compare.stream_model``)
both stream a model over a split this way; each turns the outcomes into its own reports (events,
exceptions). Usage::

    for outcome in run_batches(group_ids, 64, step, prepare=feed, cancelled=stop_requested):
        if isinstance(outcome, BatchHalved): ...      # batch size halved, the same indices retried
        elif isinstance(outcome, BatchFailed): ...    # last outcome: run raised (not a retried OOM)
        elif isinstance(outcome, BatchCancelled): ... # last outcome: cancelled before a batch
        else: ...                                     # a Batch that ran

``prepare`` builds the inputs of a batch on the host; its exceptions propagate unchanged (bad
input is the caller's error, not a failed batch). ``run`` is the device call; out-of-memory there
(``is_oom``) halves the batch and retries the same indices, down to a batch of 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ptytui.core.tfload import tf as _tf

#: Message fragments by which TensorFlow, a graph function or XLA report out-of-memory.
OOM_MARKERS = ("ResourceExhaustedError", "RESOURCE_EXHAUSTED", "OOM when allocating", "Out of memory")


def is_oom(exc: BaseException) -> bool:
    """Out of memory, however TF reports it: as ResourceExhaustedError (or MemoryError), or wrapped
    by a graph function or XLA into another error type whose message still says so."""
    if isinstance(exc, (_tf().errors.ResourceExhaustedError, MemoryError)):
        return True
    return isinstance(exc, _tf().errors.OpError) and any(m in str(exc) for m in OOM_MARKERS)


@dataclass(frozen=True)
class Batch:
    """One batch that ran: its ``indices``, the ``inputs`` ``prepare`` made of them, ``run``'s
    ``result``, and ``done``, the number of indices finished so far (this batch included)."""

    indices: np.ndarray
    inputs: Any
    result: Any
    done: int


@dataclass(frozen=True)
class BatchHalved:
    """``run`` ran out of memory at batch size ``old``; the same indices are retried at ``new``."""

    old: int
    new: int
    error: BaseException


@dataclass(frozen=True)
class BatchFailed:
    """``run`` raised ``error`` (not out-of-memory, or out-of-memory at batch size 1) after ``done``
    indices; the last outcome."""

    error: BaseException
    done: int


@dataclass(frozen=True)
class BatchCancelled:
    """Cancellation was asked for before a batch, after ``done`` indices; the last outcome."""

    done: int


BatchOutcome = Batch | BatchHalved | BatchFailed | BatchCancelled


def run_batches(indices: Any, batch_size: int, run: Callable[[Any], Any], *,
                prepare: Callable[[np.ndarray], Any] | None = None,
                cancelled: Callable[[], bool] | None = None) -> Iterator[BatchOutcome]:
    """Run ``run(prepare(chunk))`` over consecutive chunks of ``indices``, halving on out-of-memory.

    Parameters
    ----------
    indices : array (M,)
        The indices to cover, in order (group indices of a split).
    batch_size : int
        Indices per batch to start with; halves (floor, at least 1) on each out-of-memory.
    run : callable
        The device call on one batch's inputs; its return value is ``Batch.result``.
    prepare : callable, optional
        Builds a batch's inputs from its indices (default: the indices themselves). Called again
        for the smaller batch after a halving. Its exceptions propagate unchanged.
    cancelled : callable, optional
        Asked before every batch; True ends the loop with ``BatchCancelled``.

    Yields
    ------
    Batch, BatchHalved, BatchFailed or BatchCancelled
        See the module docstring; ``BatchFailed`` and ``BatchCancelled`` end the loop.
    """
    indices = np.asarray(indices)
    size = int(batch_size)
    done = 0
    while done < indices.size:
        if cancelled is not None and cancelled():
            yield BatchCancelled(done)
            return
        chunk = indices[done:done + size]
        inputs = chunk if prepare is None else prepare(chunk)
        try:
            result = run(inputs)
        except Exception as exc:  # noqa: BLE001 - out-of-memory retries, anything else is reported
            if is_oom(exc) and size > 1:
                new = max(1, size // 2)
                yield BatchHalved(size, new, exc)
                size = new
                continue
            yield BatchFailed(exc, done)
            return
        done += len(chunk)
        yield Batch(chunk, inputs, result, done)
