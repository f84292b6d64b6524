"""Walk a Keras 3 model node by node (nested models expanded), reducing every layer output.

The one graph walk behind the layer trace and live layer health: ``walk_model`` runs a functional
or Sequential model layer by layer (eagerly, or inside a ``tf.function`` where the same walk
builds the graph) and hands each layer call's outputs to a ``reduce(meta, outputs)`` callback as
soon as they exist; each output is released after its last consumer, so at most the live frontier
of tensors is held, as in a plain forward pass.

Paths are relative to the walked model: a top-level layer ``conv1`` is ``conv1``; a layer ``conv``
inside a nested model ``encoder`` is ``encoder/conv``; a layer called more than once (shared
weights) gets ``name#1``, ``name#2`` for its later calls; model inputs are entries of type
``InputLayer`` under their input name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

PREVIEW_MAX_SIDE = 64  # the preview is strided down to at most this many pixels per side


@dataclass
class EntryMeta:
    path: str
    name: str
    type: str
    depth: int
    parent: str | None
    is_container: bool
    is_input: bool
    inputs: list[int]  # indices of producer entries
    output_shapes: list[tuple]
    output_dtypes: list[str]
    layer: Any = None  # the Keras layer (leaf layers only), for weight health
    record_names: list[str] = field(default_factory=list)  # set when the outputs are reduced
    ranks: list[int | None] = field(default_factory=list)


def graph_of(model):
    """The functional graph behind a model (Sequential models keep theirs in ``_functional``)."""
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_run_through_graph"):
        return model
    functional = getattr(model, "_functional", None)
    if functional is not None and hasattr(functional, "_nodes_by_depth"):
        return functional
    return None


def is_sequential_unbuilt(op) -> bool:
    return type(op).__name__ == "Sequential" and graph_of(op) is None


def _call_op(op, args, kwargs):
    # Inference mode for every layer that takes a training flag (what Functional.call does).
    context_args = getattr(op, "_call_context_args", None)
    if context_args is not None:
        if "training" in context_args:
            kwargs = dict(kwargs, training=False)
    elif getattr(op, "_call_has_training_arg", False):
        kwargs = dict(kwargs, training=False)
    return op(*args, **kwargs)


def _shape_of(x) -> tuple:
    shape = getattr(x, "shape", None)
    if shape is None:
        return ()
    return tuple(None if d is None else int(d) for d in shape)


def _dtype_name(x) -> str:
    dtype = getattr(x, "dtype", None)
    return str(getattr(dtype, "name", dtype))


class Walker:
    """Runs a model node by node (recursing into nested models), reducing every output at once.

    Each output is reduced as soon as it exists (``reduce(meta, outputs)``) and dropped as soon
    as its last consumer has run, so eagerly at most the tensors of the live frontier are held
    (as in a plain forward pass); inside a ``tf.function`` the same walk builds the graph.
    """

    def __init__(self, reduce: Callable[[EntryMeta, list], Any], preview_path: str | None = None) -> None:
        self.entries: list[EntryMeta] = []
        self.results: list[Any] = []
        self._reduce = reduce
        self._preview_path = preview_path

    def _add(self, meta: EntryMeta, outputs: list) -> int:
        self.entries.append(meta)
        self.results.append(self._reduce(meta, outputs) if outputs else None)
        return len(self.entries) - 1

    def run_model(self, model, flat_inputs: list, input_producers: list[int | None],
                  prefix: str, depth: int, parent: str | None) -> tuple[list, list[int | None]]:
        """Run ``model`` on ``flat_inputs``; return its flat outputs and their producer entries."""
        graph = graph_of(model)
        if graph is None:
            return self._run_unbuilt_sequential(model, flat_inputs, input_producers, prefix,
                                                depth, parent)
        values: dict[int, Any] = {}
        producers: dict[int, int | None] = {}
        for symbolic, value, producer in zip(graph.inputs, flat_inputs, input_producers):
            values[id(symbolic)] = value
            producers[id(symbolic)] = producer
        depth_keys = sorted(graph._nodes_by_depth.keys(), reverse=True)
        # consumers left per tensor, so each can be released after its last use
        pending: dict[int, int] = {}
        for depth_key in depth_keys:
            for node in graph._nodes_by_depth[depth_key]:
                if node.operation and not node.is_input:
                    for x in node.input_tensors:
                        pending[id(x)] = pending.get(id(x), 0) + 1
        keep = {id(x) for x in graph.outputs}
        calls_per_op: dict[int, int] = {}
        for depth_key in depth_keys:
            for node in graph._nodes_by_depth[depth_key]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in values for x in node.input_tensors):
                    continue  # not reachable from the inputs (Keras skips these too)
                args, kwargs = node.arguments.fill_in(values)
                op = node.operation
                n_calls = calls_per_op.get(id(op), 0)
                calls_per_op[id(op)] = n_calls + 1
                name = op.name if n_calls == 0 else f"{op.name}#{n_calls}"
                path = f"{prefix}{name}"
                # producers in argument order (the first argument is the main input on ties)
                feeding = list(dict.fromkeys(p for p in (producers.get(id(x)) for x in node.input_tensors)
                                             if p is not None))
                inner = graph_of(op) if hasattr(op, "layers") else None
                if inner is not None or is_sequential_unbuilt(op):
                    outputs = self._run_nested(op, args, feeding, node, path, name, depth, parent,
                                               [producers.get(id(x)) for x in node.input_tensors])
                else:
                    result = _call_op(op, args, kwargs)
                    flat = flatten(result)
                    index = self._add(EntryMeta(
                        path=path, name=name, type=type(op).__name__, depth=depth, parent=parent,
                        is_container=False, is_input=False, inputs=feeding,
                        output_shapes=[_shape_of(x) for x in node.outputs],
                        output_dtypes=[_dtype_name(x) for x in node.outputs],
                        layer=op if hasattr(op, "weights") else None), flat)
                    outputs = [(x, index) for x in flat]
                    del result, flat
                del args, kwargs
                for symbolic, (value, producer) in zip(node.outputs, outputs):
                    values[id(symbolic)] = value
                    producers[id(symbolic)] = producer
                del outputs
                for x in node.input_tensors:
                    pending[id(x)] -= 1
                    if pending[id(x)] == 0 and id(x) not in keep:
                        values.pop(id(x), None)
        flat_out = [values[id(x)] for x in graph.outputs]
        out_producers = [producers.get(id(x)) for x in graph.outputs]
        return flat_out, out_producers

    def _run_nested(self, op, args, feeding, node, path, name, depth, parent, arg_producers):
        """Expand a nested model: a container entry, then its layers as children."""
        container = EntryMeta(
            path=path, name=name, type=type(op).__name__, depth=depth, parent=parent,
            is_container=True, is_input=False, inputs=feeding,
            output_shapes=[_shape_of(x) for x in node.outputs],
            output_dtypes=[_dtype_name(x) for x in node.outputs])
        container_index = self._add(container, [])
        inner_inputs = args[0] if len(args) == 1 else list(args)
        flat_inner = flatten(inner_inputs)
        graph = graph_of(op)
        if graph is not None and hasattr(graph, "_standardize_inputs"):
            try:
                flat_inner = list(graph._standardize_inputs(inner_inputs))
            except Exception:  # fall back to plain flattening (same order for lists)
                flat_inner = flatten(inner_inputs)
        inner_producers = list(arg_producers)
        if len(inner_producers) != len(flat_inner):
            inner_producers = [feeding[0] if feeding else None] * len(flat_inner)
        outputs, out_producers = self.run_model(op, flat_inner, inner_producers, f"{path}/",
                                                depth + 1, path)
        if len(outputs) == 1 and out_producers[0] is not None and path != self._preview_path:
            # a nested model's output is its last layer's output: reuse that reduction
            source = self.entries[out_producers[0]]
            container.record_names, container.ranks = source.record_names, source.ranks
            self.results[container_index] = self.results[out_producers[0]]
        else:
            self.results[container_index] = self._reduce(container, outputs)
        return list(zip(outputs, out_producers))

    def _run_unbuilt_sequential(self, model, flat_inputs, input_producers, prefix, depth, parent):
        x = flat_inputs[0] if len(flat_inputs) == 1 else flat_inputs
        producer = input_producers[0] if input_producers else None
        for layer in model.layers:
            result = _call_op(layer, (x,), {})
            outputs = flatten(result)
            index = self._add(EntryMeta(
                path=f"{prefix}{layer.name}", name=layer.name, type=type(layer).__name__,
                depth=depth, parent=parent, is_container=False, is_input=False,
                inputs=[producer] if producer is not None else [],
                output_shapes=[_shape_of(o) for o in outputs],
                output_dtypes=[_dtype_name(o) for o in outputs], layer=layer), outputs)
            x, producer = result, index
        return flatten(x), [producer] * len(flatten(x))


def flatten(structure) -> list:
    if isinstance(structure, (list, tuple)):
        out = []
        for item in structure:
            out.extend(flatten(item))
        return out
    if isinstance(structure, dict):
        out = []
        for key in sorted(structure):
            out.extend(flatten(structure[key]))
        return out
    return [structure]


def preview_tf(tf, x):
    """Sample 0, channel 0 (index 0 of every axis past the second), strided to <= 64 per side."""
    sample = x[0] if x.shape.rank and x.shape.rank >= 1 else tf.reshape(x, [1])
    while sample.shape.rank > 2:
        sample = sample[..., 0]
    if sample.shape.rank == 1:
        sample = tf.reshape(sample, [1, -1])
    elif sample.shape.rank == 0:
        sample = tf.reshape(sample, [1, 1])
    height, width = tf.shape(sample)[0], tf.shape(sample)[1]
    stride_y = tf.maximum(1, (height + PREVIEW_MAX_SIDE - 1) // PREVIEW_MAX_SIDE)
    stride_x = tf.maximum(1, (width + PREVIEW_MAX_SIDE - 1) // PREVIEW_MAX_SIDE)
    return {"image": sample[::stride_y, ::stride_x],
            "stride": tf.stack([stride_y, stride_x])}


def model_inputs(model) -> list:
    graph = graph_of(model)
    if graph is not None:
        return list(graph.inputs)
    return list(getattr(model, "inputs", None) or [])


def input_name(symbolic) -> str:
    """The name of the InputLayer behind a model input (what model configs and cards call it)."""
    history = getattr(symbolic, "_keras_history", None)
    operation = getattr(history, "operation", None)
    name = getattr(operation, "name", None) or getattr(symbolic, "name", None) or "input"
    return str(name).split(":")[0]


def flatten_model_inputs(model, inputs) -> list[np.ndarray]:
    """Model inputs (array, list, or dict by input name) in the order of ``model.inputs``."""
    symbolic = model_inputs(model)
    if isinstance(inputs, Mapping):
        names = [input_name(s) for s in symbolic]
        missing = [n for n in names if n not in inputs]
        if missing:
            if len(inputs) == len(names):  # dict keyed by role or position: keep its order
                return [np.asarray(v) for v in inputs.values()]
            raise KeyError(f"model inputs {missing} not given (have {sorted(inputs)})")
        return [np.asarray(inputs[n]) for n in names]
    if isinstance(inputs, (list, tuple)):
        return [np.asarray(v) for v in inputs]
    return [np.asarray(inputs)]


def walk_model(model, flat_inputs: list, reduce: Callable[[EntryMeta, list], Any],
               preview_path: str | None = None) -> tuple[list[EntryMeta], list, list]:
    """Walk the whole model once; return its entries (inputs first, in execution order),
    ``reduce``'s result for each (a nested model whose single output is its last layer's output
    reuses that layer's result, unless it is the preview path) and the model's flat outputs."""
    if graph_of(model) is None and not is_sequential_unbuilt(model):
        raise TypeError(f"{type(model).__name__} is not a functional or Sequential model")
    walker = Walker(reduce, preview_path)
    producers: list[int | None] = []
    for symbolic, value in zip(model_inputs(model), flat_inputs):
        name = input_name(symbolic)
        producers.append(walker._add(EntryMeta(
            path=name, name=name, type="InputLayer", depth=0, parent=None, is_container=False,
            is_input=True, inputs=[], output_shapes=[_shape_of(symbolic)],
            output_dtypes=[_dtype_name(symbolic)]), [value]))
    outputs, _ = walker.run_model(model, list(flat_inputs), producers, "", 0, None)
    return walker.entries, walker.results, outputs
