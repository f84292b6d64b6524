"""The layer trace's output count: one output per input, as every call of the inference runner
must return (``inference.output_count_message`` owns the words).

Some models merge the samples of one call (PtychoPINN's reassembly sums a call of 64 or more
patches into one canvas: 64 inputs, 1 output). A trace of such a call still has a record per
layer, but from the merging layer on those records describe the batch as a whole, not its
samples. ``output_count_of`` reads what the probe already measured (each part's leading
dimension on the device); it runs nothing.

Conventions
-----------
- ``inputs``: samples in the probe batch (the leading dimension of the first model input).
- ``returned``: the smallest leading dimension over the model's outputs (1 for a scalar output),
  as ``core.stats.output_count_tf`` counts a call's outputs; None when no output has a record
  (e.g. only string outputs).
- ``not_per_sample``: every entry (containers included) whose output 0 has a leading dimension
  other than ``inputs``, in execution order; ``lost_at``: the first of them that is a layer
  (not a model input, not a nested model's container entry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptytui.running.inference import output_count_message
from ptytui.running.layer_health import Probe
from ptytui.running.walk import graph_of

TRACE_REMEDY = "trace fewer samples in one call"


@dataclass
class OutputCount:
    """The model's outputs on one probe batch against its inputs."""

    inputs: int
    returned: int | None
    lost_at: str | None = None
    not_per_sample: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """One output per input (True when the outputs could not be counted)."""
        return self.returned is None or self.returned == self.inputs

    def message(self, remedy: str = TRACE_REMEDY) -> str | None:
        """The one line of ``output_count_message`` (with where the samples merge), or None."""
        if self.matches:
            return None
        where = f"the sample axis is lost at {self.lost_at}; " if self.lost_at else ""
        return output_count_message(int(self.returned), self.inputs, self.inputs, remedy=where + remedy)

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "returned": self.returned, "matches": self.matches,
                "lost_at": self.lost_at, "not_per_sample": list(self.not_per_sample),
                "message": self.message()}


def _leads(probe: Probe, index: int) -> list[int]:
    """The leading dimension of each reduced part of one entry (outputs in order)."""
    return [int(probe.records[p].samples) for p in probe.entry_parts[index]]


def _output_part_leads(probe: Probe, index: int, tensor_index: int) -> list[int]:
    """Leading dimensions of the parts of output ``tensor_index`` of one entry (all of its parts
    when it has one output: parts are "output" or "output.amplitude"/"output.phase")."""
    parts = probe.entry_parts[index]
    base = f"output_{tensor_index}"
    chosen = [p for p in parts if probe.slots[p].name.split(".")[0] == base] or parts
    return [int(probe.records[p].samples) for p in chosen]


def _model_output_leads(model, probe: Probe) -> list[int]:
    """The leading dimension of each of the model's outputs, from the entries of the top-level
    layers that return them (a layer called more than once: its last call, as the walk names it
    ``name#k``). An unbuilt Sequential model returns its last layer's output."""
    top = [i for i, meta in enumerate(probe.entries) if meta.parent is None]
    graph = graph_of(model)
    if graph is None:
        layers = [i for i in top if not probe.entries[i].is_input and probe.entry_parts[i]]
        return _leads(probe, layers[-1])[:1] if layers else []
    leads: list[int] = []
    for symbolic in graph.outputs:
        history = getattr(symbolic, "_keras_history", None)
        operation = getattr(history, "operation", None)
        name = getattr(operation, "name", None)
        calls = [i for i in top if probe.entries[i].name.split("#")[0] == name and probe.entry_parts[i]]
        if calls:
            leads += _output_part_leads(probe, calls[-1], int(getattr(history, "tensor_index", 0)))[:1]
    return leads


def output_count_of(model, probe: Probe, inputs: int) -> OutputCount:
    """The model's output count on the probe batch of ``inputs`` samples, and the entries whose
    sample axis no longer matches it (see the module docstring)."""
    leads = _model_output_leads(model, probe)
    count = OutputCount(inputs=int(inputs), returned=min(leads) if leads else None)
    for index, meta in enumerate(probe.entries):
        first = _leads(probe, index)[:1]
        if meta.is_input or not first or first[0] == count.inputs:
            continue
        count.not_per_sample.append(meta.path)
        if count.lost_at is None and not meta.is_container:
            count.lost_at = meta.path
    return count
