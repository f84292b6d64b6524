"""Every layer's health in one compiled step: the probe trace's and the live run's device side.

``HealthStep(model)`` is one ``tf.function`` (built once per model and preview, cached) that walks
the model (``running.walk``, nested models expanded) and reduces every layer output where it
lives, in as few passes over the tensor as stock TF ops allow. A layer output ``t`` (each *part*:
a real output as it is, a complex one as amplitude and phase, integer and bool outputs as
float32) is viewed as (B samples, S positions, C channels) and gives:

- always, exact: the nonzero count per (sample, channel) -> per sample (B,) and per channel (C,)
  (one compare, one cast, one inner reduction), and the float32 sum of ``t``. NaN and Inf
  propagate through a sum, so a finite sum proves the part finite; a batch with a non-finite sum
  is recomputed by the exact slow path (``exact=True``, compiled as well, so it sees the same
  values as the fast graph: Grappler fuses Conv2D+BiasAdd+ReLU there, and a fused ReLU maps NaN to
  0 where an eager one propagates it), which counts NaN and Inf per sample and masks them out of
  the moments.
- on moment batches (``full``): sum of squares, min and max (float32, over the whole batch), and
  the histogram of raw float32 codes ``bits >> 22`` (1024 bins) over the first ``hist_rows(part)``
  samples; the host maps the codes onto ``core.stats``'s symlog bins exactly and counts
  subnormals (exponent-0 codes minus the exact zeros there).

With ptytui's kernel (``running.health_kernel``, the CPU) each part is one op that also counts
NaN and Inf exactly, and the graph walk reduces the parts after the walk so that a part that is
a TF ``Relu``/``Relu6`` of another part, or a zero padding of either, gets its record from the
same pass over that input (``derived_sources``); a batch where the input has a value that derivation cannot vouch for
(NaN, Inf, a positive subnormal) comes back with a NaN sum and is run again through the exact
path, which reads every output.

No float64 on the device: the sums combine in float64 on the host (mean = sum / n, m2 = sum of
squares - sum^2 / n: relative error of the variance about 1e-7 * mean^2 / variance). Whether a
batch is a moment batch is a tensor argument (the rows the moment reductions see: all or none),
so one graph serves both kinds of batch. Every part's results are packed into three vectors
(int32 counts, float32 sums, int32 histograms): three transfers per batch, split on the host by
a header of (B, S, C) per part.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from ptytui.core.events import LayerHealthUpdate
from ptytui.core.health import RAW_BINS, SUBNORMAL_CODES, LayerHealth, index_runs, symlog_hist
from ptytui.core.stats import output_count_tf, reduce_named_tf
from ptytui.core.tfload import tf as _tf
from ptytui.running import health_kernel
from ptytui.running.walk import EntryMeta, flatten_model_inputs, input_name, model_inputs, preview_tf, walk_model

HIST_MIN_SAMPLES = 4  # the histogram sees at least this many samples of a moment batch...
HIST_MIN_ELEMENTS = 4096  # ...and at least this many elements (all samples of small outputs)
FLOATS_PER_PART = 4  # sum, sum of squares, min, max
ALL_ROWS = 1 << 30  # moment rows of a moment batch: every row, whatever a part's leading size


@dataclass
class PartSlot:
    """One reduced part of one entry's outputs (static, recorded while the graph is traced)."""

    entry: int  # index into the step's entries
    name: str  # "output", "output_1", "output.amplitude", "output.phase"
    rank: int | None  # rank of the output (the channel view needs rank >= 2)
    hist_rows: int  # samples per moment batch the histogram sees


def hist_rows(shape: tuple) -> int:
    """Samples of a batch the histogram sees for an output of this (batch-first) shape."""
    per_sample = 1
    for d in shape[1:]:
        if d is None:
            return HIST_MIN_SAMPLES
        per_sample *= int(d)
    return max(HIST_MIN_SAMPLES, -(-HIST_MIN_ELEMENTS // max(per_sample, 1)))


def _parts(tf, outputs: list) -> list[tuple[str, Any]]:
    """The float32 parts of an entry's outputs, named as the trace names its records."""
    tensors = [x for x in outputs if hasattr(x, "dtype") and hasattr(x, "shape")]
    tensors = [x for x in tensors if (lambda d: d.is_floating or d.is_complex or d.is_integer
                                      or d.is_bool)(tf.as_dtype(x.dtype))]
    parts = []
    for i, x in enumerate(tensors):
        base = "output" if len(tensors) == 1 else f"output_{i}"
        if x.dtype.is_complex:
            parts += [(f"{base}.amplitude", tf.abs(x)), (f"{base}.phase", tf.math.angle(x))]
        else:
            parts.append((base, x if x.dtype == tf.float32 else tf.cast(x, tf.float32)))
    return parts


def reduce_part(tf, t, moment_rows, hist_rows_static: int, exact: bool) -> dict[str, Any]:
    """The device reduction of one float32 part (see the module docstring): one pass of
    ptytui's kernel where it is used (``running.health_kernel``: on the CPU, always exact),
    else stock TensorFlow ops."""
    if t.shape.rank == 0:
        t = tf.reshape(t, [1])
    native = health_kernel.kernel()
    if native is not None:
        # NaN and Inf counted exactly on every batch, and the sum (floats[0]) is over the finite
        # values of the moment rows only: finite, so run_batch never reruns the batch
        return native_parts(native, t, moment_rows, hist_rows_static)[0]
    shape = tf.shape(t)
    lead = shape[0]
    channels = shape[-1] if t.shape.rank >= 2 else tf.constant(1, tf.int32)
    rows = tf.reshape(t, [lead, -1, channels])
    nonzero = tf.reduce_sum(tf.cast(tf.not_equal(rows, 0), tf.int32), axis=1)  # (B, C)
    out = {"head": tf.stack([lead, tf.shape(rows)[1], channels]),
           "per_sample": tf.reduce_sum(nonzero, axis=1), "per_channel": tf.reduce_sum(nonzero, axis=0)}
    moments = t[:moment_rows]  # all rows or none: a dim-0 slice, no copy
    if exact:
        finite = tf.math.is_finite(rows)
        out["nan"] = tf.reduce_sum(tf.cast(tf.math.is_nan(rows), tf.int32), axis=[1, 2])
        out["inf"] = tf.reduce_sum(tf.cast(tf.math.is_inf(rows), tf.int32), axis=[1, 2])
        total = tf.reduce_sum(tf.where(finite, rows, 0.0))
        finite_m = tf.math.is_finite(moments)
        clean = tf.where(finite_m, moments, 0.0)
        low = tf.reduce_min(tf.where(finite_m, moments, math.inf))
        high = tf.reduce_max(tf.where(finite_m, moments, -math.inf))
    else:
        total = tf.reduce_sum(t)
        clean, low, high = moments, tf.reduce_min(moments), tf.reduce_max(moments)
    norm = tf.math.reduce_euclidean_norm(clean)
    out["floats"] = tf.stack([total, norm * norm, low, high])
    sampled = t[:tf.minimum(moment_rows, hist_rows_static)]
    code = tf.bitwise.right_shift(tf.bitcast(tf.reshape(sampled, [-1]), tf.uint32), tf.constant(22, tf.uint32))
    out["hist"] = tf.math.bincount(tf.bitcast(code, tf.int32), minlength=RAW_BINS, maxlength=RAW_BINS,
                                   dtype=tf.int32)
    return out


RECORD_KEYS = ("head", "per_sample", "per_channel", "nan", "inf", "floats", "hist")
DERIVABLE = {"Relu": "relu", "Relu6": "relu6", "Pad": "pad"}  # TF ops whose records the kernel derives


@dataclass(frozen=True)
class Derived:
    """A part whose record the kernel derives from another part's pass (``derived_sources``)."""

    source: int  # the part read
    kind: str  # "relu", "relu6" or "pad"
    pad_positions: int = 0  # positions per sample the padding adds ("pad")
    padded: int | None = None  # "pad" of a derived activation: that activation's part


def native_parts(native, t, moment_rows, hist_rows_static: int, derived=(), pad_of=()) -> list[dict[str, Any]]:
    """The kernel's records of ``t`` and of each ``Derived`` output computed from it (activations
    before pads, the kernel's order; ``pad_of``: per derived output, the record a pad pads, 0 for
    ``t`` or 1 + the activation's position), from one pass over ``t``. A derived activation's sum
    is NaN on a batch where ``t`` has a value it cannot vouch for (NaN, Inf, a positive
    subnormal), which sends ``run_batch`` to the exact path, where every output is read itself."""
    derived = list(derived)
    if t.shape.rank == 0:
        t = _tf().reshape(t, [1])
    outputs = native.ptytui_layer_health(t, moment_rows, hist_rows_static,
                                         activations=[d.kind for d in derived],
                                         pad_positions=[d.pad_positions for d in derived],
                                         pad_of=list(pad_of) or [0] * len(derived), N=1 + len(derived))
    return [{key: getattr(outputs, key)[r] for key in RECORD_KEYS} for r in range(1 + len(derived))]


def _pad_positions(tf, op, x, y) -> int | None:
    """Positions per sample a ``Pad`` op adds when it pads only the positions of x (not the
    samples, not the channels) with zeros and both shapes are static past the batch; else None."""
    paddings = tf.get_static_value(op.inputs[1])
    rank = x.shape.rank
    if paddings is None or rank is None or rank < 2 or np.shape(paddings) != (rank, 2):
        return None
    if np.any(paddings[0] != 0) or np.any(paddings[-1] != 0) or np.any(paddings < 0):
        return None
    dims_x, dims_y = x.shape[1:-1], y.shape[1:-1]
    if any(d is None for d in list(dims_x) + list(dims_y)):
        return None
    return int(np.prod(dims_y, dtype=np.int64) - np.prod(dims_x, dtype=np.int64))


def derived_sources(tensors: list, hist_rows_of: list[int] | None = None) -> dict[int, Derived]:
    """{index of a part: how its record is derived} for graph parts that are the output of a TF
    ``Relu``/``Relu6`` op, or of a ``Pad`` op padding positions with zeros, on another part
    (float32 both, the same histogram rows) that is not itself derived, or a zero padding of such
    a derived activation: the kernel reads the source once for all of them (MobileNetV2's 35 ReLU6
    and 4 padding layers, DenseNet121's 121 ReLU activations), so their outputs are never read."""
    tf = _tf()
    index = {}
    for i, t in enumerate(tensors):
        if getattr(t, "dtype", None) is not None and t.dtype.name == "float32" and hasattr(t, "ref"):
            index.setdefault(t.ref(), i)
    derived: dict[int, Derived] = {}
    for i, t in enumerate(tensors):
        op = getattr(t, "op", None)
        kind = DERIVABLE.get(getattr(op, "type", None)) if op is not None else None
        if kind is None or not op.inputs or t.dtype.name != "float32" or t.shape.rank is None:
            continue
        source = index.get(op.inputs[0].ref())
        padded = None
        if source is not None and source in derived and kind == "pad" and derived[source].kind != "pad":
            source, padded = derived[source].source, source  # zero padding of a derived activation
        if source is None or source == i or source in derived:
            continue
        x = tensors[source]
        if x.shape.rank != t.shape.rank:
            continue
        if hist_rows_of is not None and hist_rows_of[source] != hist_rows_of[i]:
            continue
        if kind == "pad":
            positions = _pad_positions(tf, op, x, t)
            if positions is None:
                continue
            derived[i] = Derived(source, kind, positions, padded)
        elif len(op.inputs) == 1:
            derived[i] = Derived(source, kind)
    return derived


def _pack(concat, reduced: list[dict]) -> dict[str, Any]:
    """Concatenate every part's results into a few vectors (header first in ``ints``);
    ``concat`` is ``tf.concat`` in a graph, ``np.concatenate`` for an eager walk's numpy parts."""
    if not reduced:
        return {"ints": np.zeros(0, np.int32), "floats": np.zeros(0, np.float32),
                "hist": np.zeros(0, np.int32)}
    packed = {"ints": concat([r["head"] for r in reduced] + [r["per_sample"] for r in reduced]
                             + [r["per_channel"] for r in reduced], 0),
              "floats": concat([r["floats"] for r in reduced], 0),
              "hist": concat([r["hist"] for r in reduced], 0)}
    if any("nan" in r for r in reduced):  # graph: every part; eager walk: numpy, some parts
        def counts(key: str) -> list:
            return [r[key] if key in r else np.zeros_like(r["per_sample"]) for r in reduced]

        packed["nonfinite"] = concat(counts("nan") + counts("inf"), 0)
    return packed


class HealthStep:
    """``step(flat_inputs, full) -> (packed health, extras, preview)`` for one Keras model.

    ``extras(input tensors, flat model outputs)`` adds what the caller computes from the same
    forward pass (the inference runner's input/output records); ``preview_path`` names one entry
    whose first sample (channel 0, strided to <= 64 per side) comes back too.
    """

    def __init__(self, model, *, preview_path: str | None = None,
                 extras: Callable[[list, list], Any] | None = None) -> None:
        self._model_ref = weakref.ref(model)
        self.preview_path = preview_path
        self._extras = extras
        self._functions: dict[tuple, Any] = {}
        self.entries: list[EntryMeta] = []
        self.entry_parts: list[list[int]] = []  # part indices of each entry
        self.slots: list[PartSlot] = []
        self.kernel = ""  # "native" or "stock (why)", set when the walk is traced
        self.derived: dict[int, Derived] = {}  # {part: how the kernel derives it} (graph walks)

    def walk(self, flat_inputs: list, reduce_one: Callable[[Any, int], dict], *,
             derive: Callable[[Any, int, list[Derived], list[int]], list[dict]] | None = None):
        """Walk the model once, reducing each part with ``reduce_one(part, hist_rows)``; record
        the entries and slots; return (reductions, preview tensors, model outputs).

        ``derive(part, hist_rows, [Derived], pad_of) -> [record dicts]`` (graph mode, the kernel): parts
        are reduced after the walk, a ReLU/ReLU6 or zero-padding output together with its input
        (``derived_sources``) in one pass over the input."""
        tf = _tf()
        slots: list[tuple[EntryMeta, PartSlot]] = []
        reduced: list[dict | None] = []
        tensors: list[Any] = []
        preview: dict[str, Any] = {}

        def reduce(meta: EntryMeta, outputs: list) -> list[int]:
            parts = _parts(tf, outputs)
            meta.record_names = [name for name, _ in parts]
            meta.ranks = [t.shape.rank for _, t in parts]
            indices = []
            for name, t in parts:
                slot = PartSlot(-1, name, t.shape.rank, hist_rows(tuple(t.shape)))
                slots.append((meta, slot))
                if derive is None:
                    reduced.append(reduce_one(t, slot.hist_rows))
                else:
                    reduced.append(None)
                    tensors.append(t)
                indices.append(len(slots) - 1)
            if meta.path == self.preview_path and outputs:
                preview.update(preview_tf(tf, outputs[0]))
            return indices

        self.kernel = health_kernel.status()  # the path reduce_part takes while this walk is traced
        entries, results, outputs = walk_model(self._model_ref(), flat_inputs, reduce, self.preview_path)
        index = {id(meta): i for i, meta in enumerate(entries)}
        for meta, slot in slots:
            slot.entry = index[id(meta)]
        self.entries, self.slots = entries, [slot for _, slot in slots]
        self.entry_parts = [list(r or []) for r in results]
        if derive is not None:
            self.derived = derived_sources(tensors, [slot.hist_rows for slot in self.slots])
            children: dict[int, list[int]] = {}
            for child, how in self.derived.items():
                children.setdefault(how.source, []).append(child)
            for i, t in enumerate(tensors):
                if i in self.derived:
                    continue
                kids = sorted(children.get(i, []), key=lambda k: self.derived[k].kind == "pad")
                record_of = {k: 1 + j for j, k in enumerate(kids)}
                pad_of = [0 if self.derived[k].padded is None else record_of[self.derived[k].padded]
                          for k in kids]
                records = derive(t, self.slots[i].hist_rows, [self.derived[k] for k in kids], pad_of)
                reduced[i] = records[0]
                for child, record in zip(kids, records[1:]):
                    reduced[child] = record
        return reduced, preview, outputs

    def _function(self, flat_inputs: list, exact: bool):
        """The compiled step for inputs like these, any batch size: one graph per input layout,
        so the last, smaller batch of a run does not build a second one."""
        tf = _tf()
        layout = tuple((tuple(x.shape[1:]), x.dtype.name) for x in flat_inputs)
        if (layout, exact) not in self._functions:
            def step(flat_inputs, moment_rows):
                reduced, preview, outputs = self.walk(
                    list(flat_inputs), lambda t, rows: reduce_part(tf, t, moment_rows, rows, exact),
                    derive=_deriver(moment_rows, exact))
                extras = self._extras(list(flat_inputs), outputs) if self._extras else ()
                return _pack(tf.concat, reduced), extras, preview

            signature = [[tf.TensorSpec((None,) + shape, dtype) for shape, dtype in layout],
                         tf.TensorSpec([], tf.int32)]
            self._functions[(layout, exact)] = tf.function(step, input_signature=signature, autograph=False)
        return self._functions[(layout, exact)]

    def __call__(self, flat_inputs: list, *, full: bool, exact: bool = False):
        tf = _tf()
        flat = [tf.convert_to_tensor(x) for x in flat_inputs]
        return self._function(flat, exact)(flat, tf.constant(ALL_ROWS if full else 0, tf.int32))


def _deriver(moment_rows, exact: bool):
    """The walk's ``derive`` for a compiled step: the kernel's derived records, except on the
    exact path (every output read itself) or where the stock ops are used."""
    native = health_kernel.kernel()
    if native is None or exact:
        return None

    return lambda t, rows, derived, pad_of: native_parts(native, t, moment_rows, rows, derived, pad_of)


# ---- host side: unpack and accumulate (vector operations over all parts at once) -----------


def _hist_rows(hist, n_parts: int) -> np.ndarray:
    """(parts, RAW_BINS) raw-code counts; the kernel returns an empty histogram for a part whose
    batch had no histogram rows (so a batch without moments transfers none)."""
    hist = np.asarray(hist)
    if hist.size == n_parts * RAW_BINS:
        return hist.astype(np.int64).reshape(n_parts, RAW_BINS)
    if hist.size == 0:
        return np.zeros((n_parts, RAW_BINS), np.int64)
    raise ValueError(f"layer health: {hist.size} histogram counts for {n_parts} parts")


@dataclass
class _Batch:
    """One batch's packed results, split per part (host numpy)."""

    lead: np.ndarray  # (P,) rows (samples) of each part
    size: np.ndarray  # (P,) elements per sample (S * C)
    channels: np.ndarray  # (P,)
    per_sample: np.ndarray  # concatenated nonzero counts per sample
    starts: np.ndarray  # (P + 1,) offsets into per_sample
    per_channel: np.ndarray  # concatenated nonzero counts per channel
    floats: np.ndarray  # (P, 4) float64: sum, sum of squares, min, max
    hist: np.ndarray  # (P, RAW_BINS) int64
    nan: np.ndarray | None  # concatenated NaN counts per sample (exact path only)
    inf: np.ndarray | None

    @classmethod
    def unpack(cls, packed: dict, n_parts: int) -> "_Batch":
        ints = np.asarray(packed["ints"]).astype(np.int64)
        head = ints[:3 * n_parts].reshape(n_parts, 3)
        lead, size = head[:, 0], head[:, 1] * head[:, 2]
        starts = np.concatenate([[0], np.cumsum(lead)])
        per_sample = ints[3 * n_parts:3 * n_parts + starts[-1]]
        per_channel = ints[3 * n_parts + starts[-1]:]
        nonfinite = packed.get("nonfinite")
        nan = inf = None
        if nonfinite is not None:
            values = np.asarray(nonfinite).astype(np.int64)
            nan, inf = values[:starts[-1]], values[starts[-1]:]
        return cls(lead, size, head[:, 2], per_sample, starts, per_channel,
                   np.asarray(packed["floats"]).astype(np.float64).reshape(n_parts, FLOATS_PER_PART),
                   _hist_rows(packed["hist"], n_parts), nan, inf)

    def per_part(self, values: np.ndarray) -> np.ndarray:
        """Sum of a concatenated per-sample vector within each part."""
        sums = np.concatenate([[0], np.cumsum(values)])
        return sums[self.starts[1:]] - sums[self.starts[:-1]]

    def first_rows_sum(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Sum of a per-sample vector over each part's first ``rows`` samples."""
        sums = np.concatenate([[0], np.cumsum(values)])
        return sums[self.starts[:-1] + np.minimum(rows, self.lead)] - sums[self.starts[:-1]]

    def sample_sets(self, mask: np.ndarray, sample_ids: np.ndarray) -> dict[int, np.ndarray]:
        """{part: sample ids where ``mask`` (per sample, concatenated)}, for parts with one row
        per sample of the batch."""
        hits = np.flatnonzero(mask)
        if hits.size == 0:
            return {}
        part = np.searchsorted(self.starts, hits, side="right") - 1
        position = hits - self.starts[part]
        keep = self.lead[part] == len(sample_ids)
        out: dict[int, list] = {}
        for p, i in zip(part[keep].tolist(), position[keep].tolist()):
            out.setdefault(p, []).append(i)
        return {p: np.asarray(sample_ids)[np.asarray(i)] for p, i in out.items()}


class HealthAccumulator:
    """Every part's health over the batches seen so far, kept as arrays; ``records()`` builds the
    ``LayerHealth`` records (exact merge: counts add, moments by Chan's formula in float64)."""

    def __init__(self, slots: list[PartSlot], keys: list[str], channels_of: list[bool],
                 sample_every: int, hist_samples: int | None) -> None:
        n = len(slots)
        self.keys, self.channels_of = keys, channels_of
        self.hist_rows = np.array([s.hist_rows for s in slots], dtype=np.int64)
        self.sample_every, self.hist_samples = sample_every, hist_samples
        self.count, self.zero, self.nan, self.inf, self.samples = (np.zeros(n, np.int64) for _ in range(5))
        self.finite, self.underflow, self.hist_elements = (np.zeros(n, np.int64) for _ in range(3))
        self.mean, self.m2 = np.zeros(n), np.zeros(n)
        self.low, self.high = np.full(n, math.inf), np.full(n, -math.inf)
        self.hist = np.zeros((n, RAW_BINS), np.int64)
        self._symlog: np.ndarray | None = None  # symlog_hist(self.hist), until the next moment batch
        self.per_channel: np.ndarray | None = None
        self.channels = np.zeros(n, np.int64)
        self.zero_ids: dict[int, list[np.ndarray]] = {}
        self.nonfinite_ids: dict[int, list[np.ndarray]] = {}
        self.max_lead = np.zeros(n, np.int64)
        self.batches = self.moment_batches = 0

    def add(self, batch: _Batch, sample_ids: np.ndarray, full: bool, *, same_batch: bool = False) -> None:
        """Fold one batch in; ``same_batch``: another replica's part of the batch added last
        (counted as the same batch, so ``batches`` does not depend on the replica count)."""
        count = batch.lead * batch.size
        nonzero = batch.per_part(batch.per_sample)
        nan = batch.per_part(batch.nan) if batch.nan is not None else np.zeros_like(count)
        inf = batch.per_part(batch.inf) if batch.inf is not None else np.zeros_like(count)
        self.count += count
        self.zero += count - nonzero
        self.nan += nan
        self.inf += inf
        self.samples += batch.lead
        self.max_lead = np.maximum(self.max_lead, batch.lead)
        self.batches += 0 if same_batch else 1
        self.channels = batch.channels
        self.per_channel = batch.per_channel.copy() if self.per_channel is None else self.per_channel + batch.per_channel
        for part, ids in batch.sample_sets(batch.per_sample == 0, sample_ids).items():
            self.zero_ids.setdefault(part, []).append(ids)
        if batch.nan is not None:
            for part, ids in batch.sample_sets(batch.nan + batch.inf > 0, sample_ids).items():
                self.nonfinite_ids.setdefault(part, []).append(ids)
        if full:
            self._add_moments(batch, count - nan - inf, same_batch)

    def _add_moments(self, batch: _Batch, finite: np.ndarray, same_batch: bool = False) -> None:
        total, sumsq, low, high = batch.floats.T
        n_b = finite.astype(np.float64)
        safe = np.maximum(n_b, 1.0)
        mean_b = np.where(n_b > 0, total / safe, 0.0)
        m2_b = np.where(n_b > 0, np.maximum(sumsq - total * total / safe, 0.0), 0.0)
        n_a = self.finite.astype(np.float64)
        n = n_a + n_b
        delta = mean_b - self.mean
        weight = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
        cross = np.divide(n_a * n_b, n, out=np.zeros_like(n), where=n > 0)
        self.m2 = self.m2 + m2_b + delta * delta * cross
        self.mean = self.mean + delta * weight
        self.finite += finite
        self.low, self.high = np.minimum(self.low, low), np.maximum(self.high, high)
        self.hist += batch.hist
        self._symlog = None
        rows = np.minimum(self.hist_rows, batch.lead)
        zeros_there = rows * batch.size - batch.first_rows_sum(batch.per_sample, self.hist_rows)
        self.underflow += batch.hist[:, SUBNORMAL_CODES].sum(axis=1) - zeros_there
        self.hist_elements += rows * batch.size
        self.moment_batches += 0 if same_batch else 1

    def records(self) -> dict[str, LayerHealth]:
        if self._symlog is None:
            self._symlog = symlog_hist(self.hist)
            self._symlog.setflags(write=False)  # shared by the records until the next moment batch
        hists = self._symlog
        offsets = np.concatenate([[0], np.cumsum(self.channels)])
        out: dict[str, LayerHealth] = {}
        for p, key in enumerate(self.keys):
            channel_nonzero = None
            if self.channels_of[p] and self.per_channel is not None:
                channel_nonzero = self.per_channel[offsets[p]:offsets[p + 1]].copy()
            out[key] = LayerHealth(
                path=key, channels=int(self.channels[p]) if self.channels_of[p] else 0,
                count=int(self.count[p]), zero_count=int(self.zero[p]), nan_count=int(self.nan[p]),
                inf_count=int(self.inf[p]), batches=self.batches, samples=int(self.samples[p]),
                channel_nonzero=channel_nonzero,
                zero_samples=index_runs(np.concatenate(self.zero_ids[p])) if p in self.zero_ids else [],
                nonfinite_samples=(index_runs(np.concatenate(self.nonfinite_ids[p]))
                                   if p in self.nonfinite_ids else []),
                moment_batches=self.moment_batches, finite_count=int(self.finite[p]),
                mean=float(self.mean[p]), m2=float(self.m2[p]), min=float(self.low[p]),
                max=float(self.high[p]), hist_elements=int(self.hist_elements[p]),
                hist_counts=hists[p], underflow_count=int(self.underflow[p]),
                sample_every=self.sample_every, hist_samples=self.hist_samples_of(p))
        return out

    def hist_samples_of(self, part: int) -> int | None:
        """Samples per moment batch the histogram saw (None: all of them)."""
        rows = int(self.hist_rows[part])
        return None if rows >= self.max_lead[part] else rows


def part_key(path: str, part: str, first: bool) -> str:
    """A part's record name: the entry's path for its first part (its output, or output 0, or
    the amplitude of a complex output), else ``path:part``."""
    return path if first else f"{path}:{part}"


def run_batch(step: HealthStep, flat_inputs: list, *, full: bool):
    """Run one batch through the step; a batch whose sums are not finite is run again through
    the exact path. Returns (the unpacked batch, the extras, the preview tensors)."""
    packed, extras, preview = step(flat_inputs, full=full)
    batch = _Batch.unpack(packed, len(step.slots))
    if not np.isfinite(batch.floats[:, 0]).all():
        packed, extras, preview = step(flat_inputs, full=full, exact=True)
        batch = _Batch.unpack(packed, len(step.slots))
    return batch, extras, preview


def accumulator_for(step: HealthStep, *, sample_every: int = 1) -> HealthAccumulator:
    firsts = {parts[0] for parts in step.entry_parts if parts}
    keys = [part_key(step.entries[s.entry].path, s.name, i in firsts) for i, s in enumerate(step.slots)]
    channels_of = [s.rank is not None and s.rank >= 2 for s in step.slots]
    return HealthAccumulator(step.slots, keys, channels_of, sample_every, None)


_STEPS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def health_step(model, preview_path: str | None = None) -> HealthStep:
    """The model's probe step for this preview, built once per model (graph build costs seconds
    for a large model; later traces reuse it)."""
    steps = _STEPS.setdefault(model, {})
    if preview_path not in steps:
        steps[preview_path] = HealthStep(model, preview_path=preview_path)
    return steps[preview_path]


@dataclass
class Probe:
    """Every part's health on one probe batch, with the walk's entries and its preview."""

    entries: list[EntryMeta]
    entry_parts: list[list[int]]  # part indices of each entry
    slots: list[PartSlot]
    records: list[LayerHealth]  # one per part
    preview: dict[str, np.ndarray]  # {"image", "stride"} of the preview entry, or empty
    kernel: str = ""  # how the records were computed: "native" or "stock (why)"


_PART_FNS: dict[bool, Any] = {}


def _eager_part(t, rows: int) -> dict[str, np.ndarray]:
    """One part reduced by a cached shape-generic compiled function (the eager walk), through
    the exact path when its sum is not finite."""
    tf = _tf()
    for exact in (False, True):
        if exact not in _PART_FNS:
            _PART_FNS[exact] = tf.function(
                lambda x, hist, exact=exact: reduce_part(tf, x, ALL_ROWS, hist, exact),
                reduce_retracing=True, autograph=False)
        out = {k: v.numpy() for k, v in _PART_FNS[exact](t, tf.constant(rows, tf.int32)).items()}
        if np.isfinite(out["floats"][0]):
            break
    return out


def probe_health(model, inputs, *, preview_path: str | None = None, compiled: bool = True,
                 sample_ids: Iterable[int] | None = None) -> Probe:
    """Every part's health on one batch (all moments exact on the batch; the histogram on
    each part's first ``hist_rows`` samples).

    ``compiled``: the model's cached ``HealthStep`` (one graph; seconds to build once, then
    about twice a forward pass); otherwise the layers run eagerly and each part is reduced by a
    small compiled function (no graph of the whole model: for a one-off probe of a large model).
    ``sample_ids``: the group index of each sample (default 0..B-1), for the sample ranges.
    """
    tf = _tf()
    flat = [tf.convert_to_tensor(v) for v in flatten_model_inputs(model, inputs)]
    if compiled:
        step = health_step(model, preview_path)
        batch, _, preview = run_batch(step, flat, full=True)
    else:
        step = HealthStep(model, preview_path=preview_path)
        reduced, preview, _ = step.walk(flat, _eager_part)
        batch = _Batch.unpack(_pack(np.concatenate, reduced), len(step.slots))
    n = int(batch.lead.max()) if batch.lead.size else 0
    ids = np.arange(n) if sample_ids is None else np.asarray(list(sample_ids), dtype=np.int64)
    accumulator = accumulator_for(step)
    accumulator.add(batch, ids, full=True)
    records = accumulator.records()
    return Probe(list(step.entries), [list(p) for p in step.entry_parts], list(step.slots),
                 [records[k] for k in accumulator.keys],
                 {k: np.asarray(v) for k, v in (preview or {}).items()}, step.kernel)


# ---- live: every layer's health while a split streams -------------------------------------

SAMPLE_EVERY = 8  # live moments and histograms from every 8th batch (counts from every batch)
UPDATE_EVERY = 8  # an update after batches 1, 2, 4, every 8th, and the last: deterministic
HEALTH_KEY = "__layer_health__"  # the packed health among a replica's reductions
OUTPUT_COUNT_KEY = "__output_count__"  # among the extras: outputs the call returned


class LiveLayerHealth:
    """The inference step of a streamed run with every layer's health recorded on every batch.

    Called like ``inference._Step`` (``step(fed) -> ([reductions], firsts)``; ``raw_step`` runs
    per replica under ``devices.DistributedStep``, see ``across``), it runs the model once
    through the model's ``HealthStep`` whose extras are the runner's own input and output
    reductions, so the run does one forward pass, not two. ``update(group ids)`` folds the batch
    just run into the records and returns the update event to yield (or None between updates).
    """

    def __init__(self, loaded_model, base_step, model_name: str, split_name: str, *,
                 sample_every: int = SAMPLE_EVERY) -> None:
        self.model = loaded_model.model
        self.model_name, self.split_name = model_name, split_name
        self.base = base_step
        self.sample_every = max(1, int(sample_every))
        self._input_names: list[str] = []
        self.step = _live_step(loaded_model, self)
        self.accumulator: HealthAccumulator | None = None
        self._pending: tuple[list[_Batch], bool] | None = None
        self.batches = 0

    def _names(self, n: int) -> list[str]:
        return self.base._names(n)

    def _set_input_names(self, fed) -> list[str]:
        names = [input_name(s) for s in model_inputs(self.model)]
        self._input_names = names if all(n in fed for n in names) else list(fed)
        return self._input_names

    def extras(self, flat_inputs: list, outputs: list):
        """The runner's reductions of inputs and outputs, and the first sample of each output."""
        reductions: dict = {}
        for name, tensor in zip(self._input_names, flat_inputs):
            reductions.update(reduce_named_tf(name, tensor))
        for name, tensor in zip(self._names(len(outputs)), outputs):
            reductions.update(reduce_named_tf(name, tensor))
        reductions[OUTPUT_COUNT_KEY] = output_count_tf(outputs)
        return reductions, [t[:1] for t in outputs]

    def __call__(self, fed: dict):
        tf = _tf()
        self._set_input_names(fed)
        flat = [tf.convert_to_tensor(v) for v in flatten_model_inputs(self.model, fed)]
        full = self.batches % self.sample_every == 0
        batch, (reductions, firsts), _ = run_batch(self.step, flat, full=full)
        self._pending = ([batch], full)
        reductions = dict(reductions)
        # the runner checks one output per input on every call (inference.output_count_message)
        self.output_counts = [int(reductions.pop(OUTPUT_COUNT_KEY))]
        return [reductions], firsts

    def raw_step(self, inputs: dict):
        """One replica's part of a batch (traced by ``DistributedStep``): moments on every batch,
        the packed health returned among the reductions under HEALTH_KEY."""
        tf = _tf()
        flat = [inputs[name] for name in self._set_input_names(inputs)]
        reduced, _, outputs = self.step.walk(flat, lambda t, rows: reduce_part(tf, t, ALL_ROWS, rows, False),
                                             derive=_deriver(tf.constant(ALL_ROWS, tf.int32), False))
        reductions, firsts = self.extras(flat, outputs)
        reductions[HEALTH_KEY] = _pack(tf.concat, reduced)
        count = reductions.pop(OUTPUT_COUNT_KEY)  # DistributedStep returns the counts apart
        return reductions, firsts, count

    def across(self, distributed_step) -> "_AcrossReplicas":
        """Wrap a ``DistributedStep`` built on this step: per-replica health parts are taken out of
        the reductions and folded in by ``update`` (every batch is a moment batch there)."""
        self.sample_every = 1
        return _AcrossReplicas(self, distributed_step)

    def update(self, group_ids, *, last: bool = False):
        """Fold the batch just run (its samples' group indices) into the records; return a
        ``LayerHealthUpdate`` after batches 1, 2, 4, every UPDATE_EVERY-th and the last."""
        if self._pending is None:
            return None
        batches, full = self._pending
        self._pending = None
        if self.accumulator is None:
            self.accumulator = accumulator_for(self.step, sample_every=self.sample_every)
        # replicas got contiguous parts, in order (np.array_split, as DistributedStep splits)
        parts = np.array_split(np.asarray(group_ids, dtype=np.int64), len(batches))
        for replica, (batch, ids) in enumerate(zip(batches, parts)):
            self.accumulator.add(batch, ids, full, same_batch=replica > 0)
        self.batches += 1
        if not (last or self.batches in (1, 2, 4) or self.batches % UPDATE_EVERY == 0):
            return None
        return LayerHealthUpdate(self.model_name, self.split_name, batches=self.batches,
                                 records=self.records())

    def records(self) -> dict[str, LayerHealth]:
        return self.accumulator.records() if self.accumulator is not None else {}


class _AcrossReplicas:
    """A ``DistributedStep`` over a ``LiveLayerHealth``: the runner's reductions per replica, the
    health parts kept for ``update``; a batch with a non-finite sum is rerun whole on the default
    device through the exact path."""

    def __init__(self, health: LiveLayerHealth, distributed_step) -> None:
        self.health, self.distributed = health, distributed_step

    def _names(self, n: int) -> list[str]:
        return self.distributed._names(n)

    @property
    def output_counts(self) -> list[int]:
        return list(getattr(self.distributed, "output_counts", None) or [])

    def __call__(self, fed: dict):
        reductions, firsts = self.distributed(fed)
        packs = [r.pop(HEALTH_KEY) for r in reductions if HEALTH_KEY in r]
        if packs:  # the replicas ran (a small batch runs whole through health.__call__)
            n_parts = len(self.health.step.slots)
            batches = [_Batch.unpack(p, n_parts) for p in packs]
            if not all(np.isfinite(b.floats[:, 0]).all() for b in batches):
                flat = flatten_model_inputs(self.health.model, fed)
                batches = [run_batch(self.health.step, flat, full=True)[0]]
            self.health._pending = (batches, True)
        return reductions, firsts


def _live_step(loaded_model, live: LiveLayerHealth) -> HealthStep:
    """The loaded model's live step (built once per loaded model, like the inference step)."""
    step = getattr(loaded_model, "_ptytui_health_step", None)
    if step is None:
        step = HealthStep(loaded_model.model, extras=lambda flat, outputs: live.extras(flat, outputs))
        try:
            loaded_model._ptytui_health_step = step
        except AttributeError:  # an object that takes no attributes: build per run
            pass
    else:
        step._extras = lambda flat, outputs: live.extras(flat, outputs)
    return step
