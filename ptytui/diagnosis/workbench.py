"""The workbench's one event stream: the diagnosis of a session (statistics, traces, geometry,
counterfactuals, findings), then the metrics of every model and the reference.
"""

from __future__ import annotations

from typing import Iterator

from ptytui.core.events import EngineEvent, FindingRaised, MetricsDone
from ptytui.diagnosis.diagnose import diagnose_events
from ptytui.errors import InputError
from ptytui.quality.compare import compare_workspace
from ptytui.quality.comparison_store import save_comparison
from ptytui.running.inference import CancelToken, is_cancelled
from ptytui.running.session import Session


def workbench_events(session: Session, cancel: CancelToken = None, *,
                     on_bad_split: str = "raise") -> Iterator[EngineEvent]:
    """Everything the workbench shows, as one stream: statistics of every model x split, traces,
    geometry, counterfactuals and findings (the diagnosis), then the metrics of every model and the
    reference against the ground truth. ``on_bad_split="report"``: an unreadable split is a
    finding and the rest still runs (the metrics are left out when their split is the bad one)."""
    unreadable = False
    for event in diagnose_events(session.workspace, cancel=cancel, session=session, trust=session.trust,
                                 seed=session.seed, n_groups=session.n_groups, batch_size=session.batch_size,
                                 on_bad_split=on_bad_split):
        if isinstance(event, FindingRaised) and event.finding.get("id") == "split-unreadable":
            unreadable = True
        yield event
    if is_cancelled(cancel):
        return
    try:
        comparison = compare_workspace(session, cancel=cancel)
    except InputError:
        if not unreadable:
            raise
        return  # the metrics' split is the one the diagnosis reported unreadable
    if is_cancelled(cancel):
        return
    _cache_comparison(session, comparison)
    flags = [{"model": entry.model_id, "flag": flag.get("flag"), "message": flag.get("message")}
             for entry in comparison.entries for flag in entry.flags]
    yield MetricsDone("*", comparison.split, metrics={"rows": comparison.rows(),
                                                      "frc": comparison.frc_rows(), "flags": flags})


def _cache_comparison(session: Session, comparison) -> None:
    """Keep the workbench's metrics in the session folder, as `ptytui compare` does: the export
    and later runs then reuse them (same inputs and decision) instead of recomputing."""
    workspace = session.workspace
    session_dir = getattr(workspace, "session_dir", None)
    if session_dir is None or getattr(workspace, "toml_path", None) is None:
        return  # --model/--data: no workspace folder of the user's to write into
    if session.n_groups is not None or session.shard is not None:
        return  # metrics of a subset: the cache is keyed by inputs and decision, not subset
    try:
        save_comparison(comparison, session_dir)
    except OSError:  # a read-only workspace: the metrics are still shown, only not cached
        pass
