"""The incident report's hypotheses, each with a direct test and a verdict (DOMAIN.md section 5).

Numerical underflow, dead weights, batch-size sensitivity, architecture clipping and weight
corruption, plus the geometric explanation none of them reached (positions off the canvas).
Verdicts: "supported", "rejected" or "inconclusive" (the test could not run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ptytui.core.tfload import tf as _tf
from ptytui.core.thresholds import THRESHOLDS
from ptytui.diagnosis.geometry import PREDICTION_TOLERANCE
from ptytui.diagnosis.interventions import model_outputs
from ptytui.running.batch_choice import output_count
from ptytui.running.inference import feed_inputs, output_count_message
from ptytui.running.trace import Trace

SUPPORTED, REJECTED, INCONCLUSIVE = "supported", "rejected", "inconclusive"

UNDERFLOW_FRACTION_MIN = THRESHOLDS.underflow_fraction_min
DEAD_CHANNELS_MIN = THRESHOLDS.dead_channels_min
BATCH_RTOL = THRESHOLDS.batch_rtol
BATCH_ATOL = THRESHOLDS.batch_atol

# Layer types whose collapse points at the activation/normalization ("architecture clipping").
CLIPPING_TYPES = ("ReLU", "LeakyReLU", "PReLU", "ELU", "Activation", "BatchNormalization",
                  "LayerNormalization", "ThresholdedReLU")
REASSEMBLY_TYPES = ("ReassemblePatches", "ReassemblePatchesLayer", "Translation", "TranslationLayer")


@dataclass
class Hypothesis:
    """One hypothesis tested on one model."""

    id: str
    name: str
    model: str
    test: str
    verdict: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "model": self.model, "test": self.test,
                "verdict": self.verdict, "evidence": self.evidence}


# ---- batch-size sensitivity -----------------------------------------------------------------


@dataclass
class BatchCouplingCheck:
    """The same samples at batch 1 and at batch B: same outputs, same batch dimension?"""

    model: str
    split: str
    batch_size: int
    shapes_batched: list[tuple]
    shapes_single: list[tuple]
    max_abs_difference: float | None  # None when the shapes differ
    output_scale: float
    returned: int | None = None  # outputs of the one call of ``batch_size`` groups (None: not counted)

    @property
    def same_shapes(self) -> bool:
        return self.shapes_batched == self.shapes_single

    @property
    def coupled(self) -> bool:
        if not self.same_shapes:
            return True
        if self.max_abs_difference is None or not math.isfinite(self.max_abs_difference):
            return False if self.max_abs_difference is None else True
        return self.max_abs_difference > BATCH_ATOL + BATCH_RTOL * self.output_scale

    @property
    def output_count_mismatch(self) -> str | None:
        """The output-count line when the batched call did not return one output per input."""
        if self.returned is None or self.returned == self.batch_size:
            return None
        return output_count_message(self.returned, self.batch_size, self.batch_size,
                                    remedy="the samples of one call are coupled")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "batch_size": self.batch_size,
                "shapes_batched": [list(s) for s in self.shapes_batched],
                "shapes_single": [list(s) for s in self.shapes_single],
                "max_abs_difference": self.max_abs_difference,
                "output_scale": self.output_scale, "coupled": self.coupled,
                "returned": self.returned, "output_count_mismatch": self.output_count_mismatch}


def batch_coupling_check(loaded_model, split, grouping, *, model: str, positions: str | None,
                         intensity_scale, batch_size: int = 16,
                         group_ids: np.ndarray | None = None) -> BatchCouplingCheck:
    """Run ``batch_size`` groups in one call and one at a time; compare outputs and their shapes.

    Only these few outputs come to the host (for the comparison); NaN compares equal to NaN.
    """

    ids = np.arange(min(batch_size, len(grouping))) if group_ids is None else np.asarray(group_ids)
    batch = grouping.batch(split, ids, ground_truth=False)
    fed = feed_inputs(loaded_model, batch, positions=positions or "relative",
                      intensity_scale=intensity_scale)
    batched = model_outputs(loaded_model, fed)
    singles: list[list[np.ndarray]] = []
    for i in range(len(ids)):
        singles.append(model_outputs(loaded_model, {k: v[i:i + 1] for k, v in fed.items()}))
    single = [np.concatenate([s[j] for s in singles], axis=0) for j in range(len(batched))]
    shapes_b = [tuple(int(d) for d in a.shape) for a in batched]
    shapes_1 = [tuple(int(d) for d in a.shape) for a in single]
    scale = max((float(np.nanmax(np.abs(a))) if a.size and np.isfinite(a).any() else 0.0)
                for a in batched) if batched else 0.0
    difference: float | None = None
    if shapes_b == shapes_1:
        diffs = []
        for a, b in zip(batched, single):
            both_nan = np.isnan(a) & np.isnan(b)
            delta = np.abs(a - b)
            delta = np.where(both_nan, 0.0, delta)
            diffs.append(float(np.max(delta)) if delta.size else 0.0)
        difference = max(diffs) if diffs else 0.0
    return BatchCouplingCheck(model=model, split=split.name, batch_size=len(ids),
                              shapes_batched=shapes_b, shapes_single=shapes_1,
                              max_abs_difference=difference, output_scale=scale,
                              returned=output_count(batched))


# ---- the tests --------------------------------------------------------------------------------


def _leaf_layers(trace: Trace):
    return [e for e in trace.layers if not e.is_container and not e.is_input]


def _merged(trace: Trace) -> bool:
    """The model did not return one output per input on the trace's probe batch."""
    return trace.output_count is not None and not trace.output_count.matches


def _sample_layers(trace: Trace):
    """Leaf layers whose statistics are over the probe's samples: where the model merged the
    samples of the call, the layers that lost the sample axis are left out (their records
    describe the merged batch). Weights do not depend on the samples: see ``_leaf_layers``."""
    layers = _leaf_layers(trace)
    return [e for e in layers if trace.per_sample(e)] if _merged(trace) else layers


def _merged_evidence(traces: Sequence[Trace]) -> dict[str, Any]:
    """Evidence naming the layers left out of an activation test, per split (empty if none)."""
    left_out = {t.split: t.output_count.not_per_sample for t in traces if _merged(t)}
    return {"layers_left_out_merged_samples": left_out} if left_out else {}


def _upto_collapse(trace: Trace):
    """Per-sample leaf layers up to and including the first collapse (what follows is dead by
    consequence)."""
    layers = _sample_layers(trace)
    if trace.first_collapse is None:
        return layers
    out = []
    for entry in layers:
        out.append(entry)
        if entry.path == trace.first_collapse.path:
            break
    return out


_FLUSHED: bool | None = None


def subnormals_flushed() -> bool:
    """True when the device flushes subnormal floats to zero (TensorFlow on CPU sets FTZ/DAZ):
    then an underflowing activation becomes an exact zero and no subnormal is ever counted."""
    global _FLUSHED
    if _FLUSHED is None:

        tf = _tf()
        probe = tf.constant(np.full(4, 1e-39, np.float32))
        _FLUSHED = bool(float(tf.reduce_max(tf.abs(probe * tf.constant(1.0)))) == 0.0)
    return _FLUSHED


def check_underflow(model: str, traces: Sequence[Trace]) -> Hypothesis:
    test = ("share of activations that are nonzero but below the float32 smallest normal "
            "1.17549435e-38, counted on the device for every layer (where the device flushes "
            "subnormals to zero, underflow shows as exact zeros: see the collapse test)")
    if not traces:
        return Hypothesis("underflow", "numerical underflow", model, test, INCONCLUSIVE,
                          {"reason": "no trace"})
    total = sum(e.underflow_count for t in traces for e in _sample_layers(t))
    elements = sum(e.output.count for t in traces for e in _sample_layers(t))
    worst = max(((e.underflow_fraction, e.path, t.split) for t in traces for e in _sample_layers(t)),
                default=(0.0, None, None))
    verdict = SUPPORTED if worst[0] > UNDERFLOW_FRACTION_MIN else REJECTED
    return Hypothesis("underflow", "numerical underflow", model, test, verdict, {
        "subnormal_count": int(total), "activation_count": int(elements),
        "subnormal_fraction": total / elements if elements else 0.0,
        "worst_layer": worst[1], "worst_split": worst[2], "worst_layer_fraction": worst[0],
        "threshold": UNDERFLOW_FRACTION_MIN, "subnormals_flushed_to_zero": subnormals_flushed(),
        **_merged_evidence(traces)})


def dead_layers(trace: Trace) -> list[dict[str, Any]]:
    """Layers (up to the first collapse) with dead channels: path, dead, channels."""
    out = []
    for e in _upto_collapse(trace):
        if e.channels >= DEAD_CHANNELS_MIN and e.dead_channels:
            out.append({"path": e.path, "type": e.type, "dead_channels": e.dead_channels,
                        "channels": e.channels, "fraction": e.dead_channel_fraction})
    return out


def kernel_problems(trace: Trace) -> dict[str, list[str]]:
    """Paths of weights that are non-finite, and of kernels that are all zero."""
    nonfinite, zero = [], []
    for e in _leaf_layers(trace):
        for name, w in e.weights.items():
            if w.nonfinite_count:
                nonfinite.append(f"{e.path}/{name}")
            if w.is_kernel and w.all_zero:
                zero.append(f"{e.path}/{name}")
    return {"nonfinite": nonfinite, "all_zero": zero}


def check_dead_weights(model: str, traces: Sequence[Trace]) -> Hypothesis:
    test = ("weight health per layer (all-zero kernels) and dead channels (never nonzero over the "
            "probe batch) up to the first collapse")
    if not traces:
        return Hypothesis("dead-weights", "vanishing gradients / dead weights", model, test,
                          INCONCLUSIVE, {"reason": "no trace"})
    fully_dead = []
    partly_dead = []
    for t in traces:
        for row in dead_layers(t):
            row = dict(row, split=t.split)
            (fully_dead if row["dead_channels"] == row["channels"] else partly_dead).append(row)
    zero_kernels = sorted({p for t in traces for p in kernel_problems(t)["all_zero"]})
    verdict = SUPPORTED if (fully_dead or zero_kernels) else REJECTED
    return Hypothesis("dead-weights", "vanishing gradients / dead weights", model, test, verdict, {
        "layers_all_channels_dead": fully_dead[:8], "layers_some_channels_dead": len(partly_dead),
        "all_zero_kernels": zero_kernels[:8], **_merged_evidence(traces)})


def check_batch_size(model: str, check: BatchCouplingCheck | None) -> Hypothesis:
    test = "the same samples at batch 1 and at batch B must give the same outputs, same batch dimension"
    if check is None:
        return Hypothesis("batch-size", "batch-size sensitivity", model, test, INCONCLUSIVE,
                          {"reason": "not run"})
    return Hypothesis("batch-size", "batch-size sensitivity", model, test,
                      SUPPORTED if check.coupled else REJECTED, check.to_dict())


def check_clipping(model: str, traces: Sequence[Trace]) -> Hypothesis:
    test = ("where the first collapse sits: at a ReLU/normalization (clipping) or elsewhere, "
            "e.g. the reassembly layer (geometry)")
    collapses = [(t.split, t.first_collapse, t) for t in traces if t.first_collapse is not None]
    if not traces:
        return Hypothesis("architecture-clipping", "architecture clipping (ReLU, batch norm)", model,
                          test, INCONCLUSIVE, {"reason": "no trace"})
    if not collapses:
        return Hypothesis("architecture-clipping", "architecture clipping (ReLU, batch norm)", model,
                          test, REJECTED, {"first_collapse": None, **_merged_evidence(traces)})
    rows = []
    clipping = False
    for split, collapse, trace in collapses:
        entry = trace.layer(collapse.path)
        kind = _collapse_kind(entry)
        clipping |= kind == "clipping"
        rows.append({"split": split, "layer": collapse.path, "type": collapse.type, "kind": kind,
                     "upstream_nonzero_fraction": collapse.upstream_nonzero_fraction,
                     "nonzero_fraction": collapse.nonzero_fraction})
    return Hypothesis("architecture-clipping", "architecture clipping (ReLU, batch norm)", model, test,
                      SUPPORTED if clipping else REJECTED, {"collapses": rows, **_merged_evidence(traces)})


def _collapse_kind(entry) -> str:
    """'reassembly', 'clipping' (a ReLU-like activation or normalization) or 'other'."""
    if entry.type in REASSEMBLY_TYPES:
        return "reassembly"
    if entry.type in CLIPPING_TYPES:
        return "clipping"
    if getattr(entry, "activation", None) in ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu"):
        return "clipping"
    return "other"


def check_weight_corruption(model: str, traces: Sequence[Trace]) -> Hypothesis:
    test = "non-finite values or all-zero kernels in any layer's weights"
    if not traces:
        return Hypothesis("weight-corruption", "weight initialization or corruption", model, test,
                          INCONCLUSIVE, {"reason": "no trace"})
    problems = kernel_problems(traces[0])  # weights do not depend on the split
    verdict = SUPPORTED if (problems["nonfinite"] or problems["all_zero"]) else REJECTED
    n_weights = sum(len(e.weights) for e in _leaf_layers(traces[0]))
    return Hypothesis("weight-corruption", "weight initialization or corruption", model, test,
                      verdict, {"nonfinite_weights": problems["nonfinite"][:8],
                                "all_zero_kernels": problems["all_zero"][:8],
                                "weights_checked": n_weights})


def check_geometry(model: str, geometries: Sequence[Any], observed: dict[str, float]) -> Hypothesis:
    """Supported only where the geometry predicts patches off the canvas AND that prediction
    matches the observation (``geometry.PREDICTION_TOLERANCE``); a failed prediction rejects it."""
    test = ("offsets as fed (minus each call's mean where the reassembly centres each call) against "
            "the reassembly canvas: predicted visible fraction mean((1-|dx|/N)(1-|dy|/N)) must match "
            f"the observed nonzero fraction within {PREDICTION_TOLERANCE} for the mechanism to hold")
    if not geometries:
        return Hypothesis("positions-off-canvas", "positions off the canvas (geometry)", model, test,
                          INCONCLUSIVE, {"reason": "the model has no reassembly layer fed positions"})
    rows = {}
    off = False
    for g in geometries:
        holds = g.prediction_holds(observed.get(g.split))
        rows[g.split] = {"predicted_visible_fraction": g.predicted_visible_fraction,
                         "observed_nonzero_fraction": observed.get(g.split),
                         "prediction_holds": holds, "tolerance": PREDICTION_TOLERANCE,
                         "centred_per_call": g.centred_per_call, "batch_size": g.batch_size,
                         "positions": g.positions, "patch": g.canvas.patch, "canvas": g.canvas.canvas}
        off |= g.off_canvas and holds
    return Hypothesis("positions-off-canvas", "positions off the canvas (geometry)", model, test,
                      SUPPORTED if off else REJECTED, rows)


def check_all(model: str, traces: Sequence[Trace], batch_check: BatchCouplingCheck | None,
             geometries: Sequence[Any] = (), observed: dict[str, float] | None = None
             ) -> list[Hypothesis]:
    """Every hypothesis for one model, in the incident report's order, then the geometry."""
    return [check_underflow(model, traces), check_dead_weights(model, traces),
            check_batch_size(model, batch_check), check_clipping(model, traces),
            check_weight_corruption(model, traces),
            check_geometry(model, geometries, observed or {})]
