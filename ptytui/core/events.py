"""Typed events the engine yields while it works; the CLI and the TUI consume the same stream.

Events are plain dataclasses holding numbers and numpy arrays (no TF tensors), so they can cross
threads, be recorded to JSON and replayed (the UI snapshot tests do exactly that).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ptytui.core.health import LayerHealth, health_from_dict, health_to_dict
from ptytui.core.stats import TensorStats, records_from_dict, records_to_dict


@dataclass
class EngineEvent:
    """Base class: every event names the model and the split it is about."""

    model: str
    split: str


@dataclass
class RunsPlanned(EngineEvent):
    """Every model x split a stream will run, before the first one starts (a status line then
    says "1/6 runs", not "1/2 runs" while the later runs have not been heard of)."""

    runs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RunStarted(EngineEvent):
    n_samples: int
    batch_size: int
    positions: str | None
    intensity_scale: float | None = None
    device: str = "cpu"


@dataclass
class BatchDone(EngineEvent):
    done: int  # samples done so far
    total: int
    inputs: dict[str, TensorStats]  # merged so far, as fed to the model
    outputs: dict[str, TensorStats]  # merged so far; complex outputs as NAME.amplitude/.phase
    seconds: float = 0.0


@dataclass
class FirstPatch(EngineEvent):
    """The first sample of the first batch: inputs and outputs, channel-last, as numpy."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    index: int = 0


@dataclass
class LayerHealthUpdate(EngineEvent):
    """Every layer's health over the batches streamed so far (``core.health``), keyed by layer
    path (``path:part`` for a layer's other outputs and complex parts)."""

    batches: int
    records: dict[str, LayerHealth]


@dataclass
class BatchSizeReduced(EngineEvent):
    old: int
    new: int
    reason: str


@dataclass
class RunResult:
    """Everything one model x split run measured; ``to_dict`` is the RUN object of CLI.md."""

    model: str
    split: str
    positions: str | None
    n_samples: int
    batches: int
    seconds: float
    inputs: dict[str, TensorStats]
    outputs: dict[str, TensorStats]
    batch_size: int
    intensity_scale: float | None = None
    notes: list[str] = field(default_factory=list)
    first_patch: FirstPatch | None = None
    layer_health: dict[str, LayerHealth] | None = None  # live layer health (not in the RUN object)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "split": self.split,
            "positions": self.positions,
            "n_samples": self.n_samples,
            "batches": self.batches,
            "seconds": round(self.seconds, 4),
            "batch_size": self.batch_size,
            "intensity_scale": self.intensity_scale,
            "notes": list(self.notes),
            "inputs": records_to_dict(self.inputs),
            "outputs": records_to_dict(self.outputs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        return cls(
            model=data["model"], split=data["split"], positions=data.get("positions"),
            n_samples=int(data["n_samples"]), batches=int(data["batches"]),
            seconds=float(data["seconds"]), inputs=records_from_dict(data["inputs"]),
            outputs=records_from_dict(data["outputs"]), batch_size=int(data.get("batch_size", 0)),
            intensity_scale=data.get("intensity_scale"), notes=list(data.get("notes", [])),
        )


@dataclass
class RunFinished(EngineEvent):
    result: RunResult


@dataclass
class RunCancelled(EngineEvent):
    done: int


@dataclass
class RunFailed(EngineEvent):
    message: str  # one line, ready to show


@dataclass
class MetricsDone(EngineEvent):
    """Metrics of every model and the reference (``split`` is the compared split; ``model`` is
    "*"). ``metrics`` = {"rows": tidy CSV rows, "frc": FRC curve rows, "flags": [{model, flag,
    message}]}: plain data, the shape ``compare --json`` writes."""

    metrics: dict


# ---- the diagnosis's events (ptytui.diagnosis.diagnose yields them between the runs' events) ----


@dataclass
class DiagnosisStage(EngineEvent):
    """What the diagnosis is doing now (one line, for a status bar)."""

    stage: str
    message: str = ""


@dataclass
class CardRead(EngineEvent):
    card: Any  # the card --json dict


@dataclass
class TraceDone(EngineEvent):
    trace: Any  # the TRACE dict of trace --json


@dataclass
class PositionsMeasured(EngineEvent):
    offsets: np.ndarray  # (K, 2) [x, y] as fed, object pixels
    patch: int | None
    canvas: int | None
    predicted_visible_fraction: float | None
    observed_nonzero_fraction: float | None


@dataclass
class CounterfactualDone(EngineEvent):
    intervention: str
    nonzero_before: float | None
    nonzero_after: float | None
    invalid: str | None = None  # why the re-run (or the run as fed) is invalid: it merged samples


@dataclass
class HypothesisTested(EngineEvent):
    name: str
    test: str
    verdict: str
    evidence: dict[str, Any]


@dataclass
class FindingRaised(EngineEvent):
    finding: dict[str, Any]  # the FINDING dict of diagnose --json


@dataclass
class DiagnosisFinished(EngineEvent):
    diagnosis: Any  # ptytui.diagnosis.record.Diagnosis
    findings: list[dict[str, Any]]
    hypotheses: list[dict[str, Any]]
    seconds: float


# ---- recording and replay (UI tests feed recorded engine events to the app) ------------------

EVENT_TYPES = {cls.__name__: cls for cls in
               (RunStarted, BatchDone, FirstPatch, BatchSizeReduced, RunFinished, RunCancelled,
                RunFailed, MetricsDone, LayerHealthUpdate)}


def _encode_array(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_array(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def event_to_dict(event: EngineEvent) -> dict[str, Any]:
    """A JSON-ready dict of an event (arrays as base64 .npy, records as STATS dicts)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(event, BatchDone) and f.name in ("inputs", "outputs"):
            value = records_to_dict(value)
        elif isinstance(event, FirstPatch) and f.name in ("inputs", "outputs"):
            value = {k: _encode_array(v) for k, v in value.items()}
        elif isinstance(event, LayerHealthUpdate) and f.name == "records":
            value = health_to_dict(value)
        elif isinstance(value, RunResult):
            value = value.to_dict()
        out[f.name] = value
    return out


def event_from_dict(data: dict[str, Any]) -> EngineEvent:
    cls = EVENT_TYPES[data["type"]]
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if cls is BatchDone:
        kwargs["inputs"] = records_from_dict(kwargs["inputs"])
        kwargs["outputs"] = records_from_dict(kwargs["outputs"])
    elif cls is FirstPatch:
        kwargs["inputs"] = {k: _decode_array(v) for k, v in kwargs["inputs"].items()}
        kwargs["outputs"] = {k: _decode_array(v) for k, v in kwargs["outputs"].items()}
    elif cls is LayerHealthUpdate:
        kwargs["records"] = health_from_dict(kwargs["records"])
    elif cls is RunFinished:
        kwargs["result"] = RunResult.from_dict(kwargs["result"])
    return cls(**kwargs)
