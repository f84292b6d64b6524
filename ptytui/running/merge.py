"""Combine ``ptytui stats --json`` documents of sharded runs (``--shard k/n``, e.g. a SLURM job
array) into the records of the whole run, exactly: records merge with ``TensorStats.merge``.

Runs are matched by model, split and positions; counts add up; shards of different groupings,
overlapping shards and records with other histogram bins are refused with one-line InputErrors.
Pure Python + numpy: no TensorFlow.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptytui.core.events import RunResult
from ptytui.core.stats import HIST_EDGES, N_BINS, TensorStats
from ptytui.errors import InputError

__all__ = ["MergeResult", "merge_documents", "merge_files", "read_stats_document"]

RUN_KEYS = ("model", "split", "n_samples", "batches", "inputs", "outputs")
RECORD_INT_KEYS = ("count", "zero_count", "nan_count", "inf_count")
GROUPING_KEYS = ("total_groups", "gridsize", "seed", "n_groups")
EXPECTED_DOCUMENT = "a 'ptytui stats --json' document ({\"runs\": [...]})"


@dataclass
class MergeResult:
    """The merged document (the ``stats --json`` shape plus ``merge``) and its runs."""

    document: dict[str, Any]
    runs: list[RunResult]
    notes: list[str] = field(default_factory=list)


# ---- reading and validating -------------------------------------------------------------------


def _refuse_constant(name: str):
    raise ValueError(f"a {name} literal (not JSON)")


def read_stats_document(path: str | Path) -> dict[str, Any]:
    """Read one ``stats --json`` file; InputError (one line naming it) for anything else."""
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise InputError(shown, EXPECTED_DOCUMENT, "no such file")
    if p.is_dir():
        raise InputError(shown, EXPECTED_DOCUMENT, "a directory")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(shown, EXPECTED_DOCUMENT, "a binary (non UTF-8) file") from None
    except OSError as exc:
        raise InputError(shown, EXPECTED_DOCUMENT, f"an unreadable file ({exc.strerror or exc})") from None
    if not text.strip():
        raise InputError(shown, EXPECTED_DOCUMENT, "an empty file")
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(shown, EXPECTED_DOCUMENT,
                         f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(shown, EXPECTED_DOCUMENT, " ".join(str(exc).split()) or "invalid JSON") from None
    validate_document(document, shown)
    return document


def validate_document(document: Any, shown: str) -> None:
    """Check the shape of a stats document and of every record in it (InputError otherwise)."""
    if not isinstance(document, dict):
        raise InputError(shown, EXPECTED_DOCUMENT, f"a JSON {_json_type(document)}")
    if "runs" not in document:
        raise InputError(shown, EXPECTED_DOCUMENT, f"keys {sorted(document)[:8]}",
                         hint="merge reads the output of 'ptytui stats --json'")
    runs = document["runs"]
    if not isinstance(runs, list):
        raise InputError(shown, "'runs' to be a list", f"a JSON {_json_type(runs)}")
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            raise InputError(shown, f"{where} to be an object", f"a JSON {_json_type(run)}")
        missing = [k for k in RUN_KEYS if k not in run]
        if missing:
            raise InputError(shown, f"{where} with keys {', '.join(RUN_KEYS)}", f"no {', '.join(missing)}")
        for key in ("model", "split"):
            if not isinstance(run[key], str) or not run[key]:
                raise InputError(shown, f"{where}.{key} a non-empty string", repr(run[key]))
        if run.get("positions") is not None and not isinstance(run["positions"], str):
            raise InputError(shown, f"{where}.positions a string or null", repr(run["positions"]))
        for key in ("n_samples", "batches"):
            if not _is_count(run[key]):
                raise InputError(shown, f"{where}.{key} an integer >= 0", repr(run[key]))
        for key in ("seconds", "intensity_scale"):
            if run.get(key) is not None and not _is_number(run[key]):
                raise InputError(shown, f"{where}.{key} a number", repr(run[key]))
        for side in ("inputs", "outputs"):
            records = run[side]
            if not isinstance(records, dict):
                raise InputError(shown, f"{where}.{side} an object of records", f"a JSON {_json_type(records)}")
            for name, record in records.items():
                _validate_record(record, shown, f"{where}.{side}.{name}")
        if "coverage" in run and run["coverage"] is not None:
            _validate_coverage(run["coverage"], shown, f"{where}.coverage", run["n_samples"])


def _validate_record(record: Any, shown: str, where: str) -> None:
    if not isinstance(record, dict):
        raise InputError(shown, f"{where} a STATS object", f"a JSON {_json_type(record)}")
    missing = [k for k in (*RECORD_INT_KEYS, "mean", "min", "max", "histogram") if k not in record]
    if missing:
        raise InputError(shown, f"{where} with the STATS keys of 'ptytui stats --json'", f"no {', '.join(missing)}")
    for key in RECORD_INT_KEYS + ("finite_count",):
        if key in record and not _is_count(record[key]):
            raise InputError(shown, f"{where}.{key} an integer >= 0", repr(record[key]))
    for key in ("mean", "min", "max", "std", "m2"):
        if record.get(key) is not None and not _is_number(record[key]):
            raise InputError(shown, f"{where}.{key} a number or null", repr(record[key]))
    histogram = record["histogram"]
    if not isinstance(histogram, dict) or "edges" not in histogram or "counts" not in histogram:
        raise InputError(shown, f"{where}.histogram with edges and counts", repr(histogram)[:60])
    edges, counts = histogram["edges"], histogram["counts"]
    if (not isinstance(edges, list) or len(edges) != N_BINS + 1
            or not all(_is_number(e) for e in edges)
            or not np.allclose(np.asarray(edges, dtype=np.float64), HIST_EDGES, rtol=1e-12, atol=0)):
        found = f"{len(edges) - 1} bins" if isinstance(edges, list) else f"edges {_json_type(edges)}"
        raise InputError(shown, f"{where}.histogram with this ptytui's {N_BINS} fixed symlog bins "
                         f"(1e-6..1e6, 4 per decade)", f"other bins ({found})",
                         hint="records with other bins cannot be merged exactly")
    if not isinstance(counts, list) or len(counts) != N_BINS or not all(_is_count(c) for c in counts):
        raise InputError(shown, f"{where}.histogram.counts {N_BINS} integers >= 0",
                         f"{len(counts) if isinstance(counts, list) else _json_type(counts)} entries")
    finite = record.get("finite_count", record["count"] - record["nan_count"] - record["inf_count"])
    if record["count"] != finite + record["nan_count"] + record["inf_count"] or sum(counts) != finite \
            or record["zero_count"] > record["count"]:
        raise InputError(shown, f"{where} with consistent counts (count = finite + NaN + Inf, "
                         f"histogram total = finite)",
                         f"count {record['count']}, finite {finite}, NaN {record['nan_count']}, "
                         f"Inf {record['inf_count']}, histogram total {sum(counts)}")


def _validate_coverage(coverage: Any, shown: str, where: str, n_samples: int) -> None:
    if not isinstance(coverage, dict) or not isinstance(coverage.get("ranges"), list):
        raise InputError(shown, f"{where} with 'ranges' (as written by ptytui stats)", repr(coverage)[:60])
    covered = 0
    previous_stop = -1
    for r in coverage["ranges"]:
        if (not isinstance(r, list) or len(r) != 2 or not all(_is_count(v) for v in r) or r[0] >= r[1]
                or r[0] < previous_stop):
            raise InputError(shown, f"{where}.ranges sorted [start, stop) pairs", repr(r))
        covered += r[1] - r[0]
        previous_stop = r[1]
    total = coverage.get("total_groups")
    if not _is_count(total) or (coverage["ranges"] and coverage["ranges"][-1][1] > total):
        raise InputError(shown, f"{where}.total_groups an integer covering the ranges", repr(total))
    if covered != n_samples:
        raise InputError(shown, f"{where}.ranges covering the run's {n_samples} groups", f"{covered} groups")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


# ---- merging ------------------------------------------------------------------------------------


@dataclass
class _Part:
    shown: str
    index: int
    run: dict[str, Any]

    @property
    def coverage(self) -> dict | None:
        return self.run.get("coverage")

    @property
    def start(self) -> int:
        cov = self.coverage
        return cov["ranges"][0][0] if cov and cov["ranges"] else 0


def merge_files(paths: list[str | Path]) -> MergeResult:
    """Read and merge stats documents (see ``merge_documents``)."""
    return merge_documents([(str(p), read_stats_document(p)) for p in paths])


def merge_documents(documents: list[tuple[str, dict]]) -> MergeResult:
    """Merge the runs of several stats documents, matched by (model, split, positions).

    Parameters
    ----------
    documents : list of (name shown in errors, document)

    Returns
    -------
    MergeResult
        ``document`` has the ``stats --json`` shape: n_samples, batches and seconds (compute
        seconds) summed, records merged exactly; each run's ``coverage`` is the union of its
        shards' and says whether it is ``complete``. ``merge`` lists the files and notes.

    Raises
    ------
    InputError
        Runs of the same model/split/positions that come from different groupings, fed with
        different intensity scales, with different tensors, or that overlap (a group in two
        shards, or two unsharded runs).
    """
    groups: dict[tuple, list[_Part]] = {}
    for shown, document in documents:
        validate_document(document, shown)
        for i, run in enumerate(document["runs"]):
            key = (run["model"], run["split"], run.get("positions"))
            groups.setdefault(key, []).append(_Part(shown, i, run))
    notes: list[str] = []
    merged_runs: list[dict[str, Any]] = []
    results: list[RunResult] = []
    for (model, split, positions), parts in groups.items():
        label = f"{model}/{split}" + (f" (positions {positions})" if positions else "")
        coverage = _check_coverage(parts, label, notes)
        parts = sorted(parts, key=lambda p: (p.start, p.shown, p.index))  # a canonical merge order
        _check_same_feeding(parts, label)
        run_dict = _merge_runs(parts, label)
        if coverage is not None:
            run_dict["coverage"] = coverage
        run_dict["merged_from"] = [f"{p.shown}#runs[{p.index}]" for p in parts]
        merged_runs.append(run_dict)
        results.append(RunResult.from_dict(run_dict))
    gates = {json.dumps((doc.get("gate") or {}).get("zero_fraction_max")) for _, doc in documents}
    zero_fraction_max = json.loads(next(iter(gates))) if len(gates) == 1 else None
    if len(gates) > 1:
        notes.append("the documents were gated with different --zero-gate values: gate not applied")
    if zero_fraction_max is not None and not (_is_number(zero_fraction_max) and 0 <= zero_fraction_max <= 1):
        zero_fraction_max = None
    devices = sorted({str(doc["devices"]) for _, doc in documents if doc.get("devices")})
    document = {
        "runs": merged_runs,
        "gate": {"zero_fraction_max": zero_fraction_max, "tripped": False, "reasons": []},
        "merge": {"files": [shown for shown, _ in documents], "notes": notes,
                  "complete": all(r.get("coverage", {}).get("complete", True) for r in merged_runs)},
    }
    if devices:
        document["devices"] = devices[0] if len(devices) == 1 else devices
    return MergeResult(document=document, runs=results, notes=notes)


def _check_coverage(parts: list[_Part], label: str, notes: list[str]) -> dict | None:
    """Refuse overlapping shards and shards of different groupings; return the union."""
    known = [p for p in parts if p.coverage]
    unknown = [p for p in parts if not p.coverage]
    if unknown:
        if len(parts) > 1:
            notes.append(f"{label}: {len(unknown)} run(s) carry no coverage (not written by "
                         "'ptytui stats'?): overlap between shards could not be checked")
        return None
    first = known[0]
    for part in known[1:]:
        for key in GROUPING_KEYS:
            if part.coverage.get(key) != first.coverage.get(key):
                raise InputError(part.shown, f"shards of {label} from one grouping ({key} "
                                 f"{first.coverage.get(key)!r} as in {first.shown})",
                                 f"{key} {part.coverage.get(key)!r}",
                                 hint="run every shard with the same --seed, --n-groups and model")
    spans = sorted(((r[0], r[1], p) for p in known for r in p.coverage["ranges"]),
                   key=lambda span: (span[0], span[1]))
    for (a0, a1, pa), (b0, b1, pb) in zip(spans, spans[1:]):
        if b0 < a1:
            also = "the same file" if pa.shown == pb.shown else pa.shown
            raise InputError(pb.shown, f"shards of {label} that do not overlap",
                             f"groups {b0}..{min(a1, b1) - 1} also in {also}",
                             hint="each shard k/n once; do not merge a merged file with its own shards")
    union: list[list[int]] = []
    for start, stop, _ in spans:
        if union and start == union[-1][1]:
            union[-1][1] = stop
        else:
            union.append([start, stop])
    total = first.coverage["total_groups"]
    complete = union == [[0, total]] or (total == 0 and not union)
    if not complete:
        covered = sum(b - a for a, b in union)
        notes.append(f"{label}: the shards cover {covered} of {total} groups (missing shards?)")
    shards = [p.coverage.get("shard") for p in known]
    return {"shard": None if complete else "partial", "ranges": union, "total_groups": total,
            **{k: first.coverage.get(k) for k in GROUPING_KEYS if k != "total_groups"},
            "complete": complete, "shards": shards}


def _check_same_feeding(parts: list[_Part], label: str) -> None:
    first = parts[0]
    for part in parts[1:]:
        a, b = first.run.get("intensity_scale"), part.run.get("intensity_scale")
        if a is not None and b is not None and not math.isclose(a, b, rel_tol=1e-9):
            raise InputError(part.shown, f"shards of {label} fed with one intensity scale "
                             f"({a} as in {first.shown})", f"intensity scale {b}")
        for side in ("inputs", "outputs"):
            if set(part.run[side]) != set(first.run[side]):
                raise InputError(part.shown, f"shards of {label} with the same {side} "
                                 f"{sorted(first.run[side])} as {first.shown}",
                                 f"{sorted(part.run[side])}")


def _merge_runs(parts: list[_Part], label: str) -> dict[str, Any]:
    def merged(side: str) -> dict[str, TensorStats]:
        out: dict[str, TensorStats] = {}
        for name in parts[0].run[side]:
            records = []
            for part in parts:
                try:
                    records.append(TensorStats.from_dict(part.run[side][name]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise InputError(part.shown, f"runs[{part.index}].{side}.{name} a STATS record",
                                     " ".join(str(exc).split()) or type(exc).__name__) from None
            out[name] = TensorStats.merge_all(records)
        return out

    notes: list[str] = []
    for part in parts:
        for note in part.run.get("notes") or []:
            if isinstance(note, str) and note not in notes:
                notes.append(note)
    result = RunResult(
        model=parts[0].run["model"], split=parts[0].run["split"],
        positions=parts[0].run.get("positions"),
        n_samples=sum(p.run["n_samples"] for p in parts),
        batches=sum(p.run["batches"] for p in parts),
        seconds=sum(float(p.run.get("seconds") or 0.0) for p in parts),
        inputs=merged("inputs"), outputs=merged("outputs"),
        batch_size=max(int(p.run.get("batch_size") or 0) for p in parts),
        intensity_scale=parts[0].run.get("intensity_scale"), notes=notes)
    return result.to_dict()
