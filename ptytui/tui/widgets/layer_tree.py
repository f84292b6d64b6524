"""The layer tree of each model (nested models expand), every node marked by health.

Built from TRACE dicts (``trace --json``), one per split, or a streamed run's live layer health
in the same shape (``tui.live_layers.live_trace``); a node's health is the worst over splits, and
a group's the worst of its children. Node data is ``LayerRef(model, path, is_layer)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ptytui.present.format import HEALTH_STYLE, HEALTH_SYMBOL, worst

DEAD_CHANNEL_WARNING = 0.25  # share of dead channels from which a layer is marked as a warning


@dataclass(frozen=True)
class LayerRef:
    model: str
    path: str  # full layer path, or the prefix for a group node; "" for the model node
    is_layer: bool


def layer_health(layer: Mapping[str, Any], first_collapse_path: str | None = None) -> str:
    """error / warning / healthy for one layer of one trace.

    error: NaN/Inf in the output or the weights, an all-zero kernel, an all-zero output, every
    channel dead, or the trace's first collapse; warning: a quarter or more of the channels dead,
    or under 1% nonzero. (A few dead ReLU channels are common in healthy small models.)
    """
    output = layer.get("output") or {}
    if output.get("nan_count") or output.get("inf_count"):
        return "error"
    for weights in (layer.get("weights") or {}).values():
        if isinstance(weights, Mapping) and (weights.get("nan_count") or weights.get("inf_count")
                                             or (weights.get("all_zero") and weights.get("is_kernel"))):
            return "error"
    if first_collapse_path and layer.get("path") == first_collapse_path:
        return "error"
    nonzero = output.get("nonzero_fraction")
    channels, dead = int(layer.get("channels") or 0), int(layer.get("dead_channels") or 0)
    if output.get("count") and nonzero is not None and nonzero == 0:
        return "error"
    if channels and dead >= channels:
        return "error"
    if channels and dead / channels >= DEAD_CHANNEL_WARNING:
        return "warning"
    if nonzero is not None and nonzero < 0.01:
        return "warning"
    return "healthy" if output else "unknown"


def layers_by_path(traces: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """{path: {split: layer dict}} in the order layers appear (first split's order first)."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for split, trace in traces.items():
        for layer in trace.get("layers", []):
            out.setdefault(str(layer.get("path")), {})[split] = layer
    return out


def path_health(path: str, traces: Mapping[str, Mapping[str, Any]],
                by_path: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    levels = []
    for split, layer in by_path.get(path, {}).items():
        collapse = (traces[split].get("first_collapse") or {}).get("path")
        levels.append(layer_health(layer, collapse))
    return worst(levels)


class LayerTree(Tree[LayerRef]):
    """Models, their nested sub-models and layers, each marked ✓ / ! / ✗."""

    DEFAULT_CSS = """
    LayerTree { width: 1fr; height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("models", **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self._layer_nodes: dict[tuple[str, str], TreeNode[LayerRef]] = {}

    def show_traces(self, traces_by_model: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """Rebuild from {model: {split: TRACE}}; keeps the cursor on the same layer if it still exists."""
        previous = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        self._layer_nodes = {}
        for model, traces in traces_by_model.items():
            by_path = layers_by_path(traces)
            health = {path: path_health(path, traces, by_path) for path in by_path}
            model_level = worst(health.values())
            model_node = self.root.add(_label(model, "", model_level), data=LayerRef(model, "", False),
                                       expand=True)
            self._layer_nodes[(model, "")] = model_node
            for path, splits in by_path.items():
                parts = path.split("/")
                parent = model_node
                for depth in range(1, len(parts)):
                    prefix = "/".join(parts[:depth])
                    key = (model, prefix)
                    if key not in self._layer_nodes:  # a group with no entry of its own
                        group_level = worst(level for p, level in health.items() if p.startswith(prefix + "/"))
                        self._layer_nodes[key] = parent.add(_label(parts[depth - 1], "", group_level),
                                                            data=LayerRef(model, prefix, False), expand=True)
                    parent = self._layer_nodes[key]
                entry = next(iter(splits.values()))
                layer_type = entry.get("type", "")
                if entry.get("container"):  # a nested model: its layers follow as children
                    inner = [health[path]] + [level for p, level in health.items() if p.startswith(path + "/")]
                    self._layer_nodes[(model, path)] = parent.add(
                        _label(parts[-1], layer_type, worst(inner)), data=LayerRef(model, path, True),
                        expand=True)
                else:
                    self._layer_nodes[(model, path)] = parent.add_leaf(
                        _label(parts[-1], layer_type, health[path]), data=LayerRef(model, path, True))
        if previous is not None and (previous.model, previous.path) in self._layer_nodes:
            self.call_after_refresh(self.move_cursor, self._layer_nodes[(previous.model, previous.path)])

    def node_for(self, model: str, path: str) -> TreeNode[LayerRef] | None:
        return self._layer_nodes.get((model, path))

    def go_to(self, model: str, path: str) -> bool:
        """Move the cursor to a layer (expanding its parents); False if it is not in the tree."""
        node = self.node_for(model, path)
        if node is None:
            return False
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)
        return True


def _label(name: str, layer_type: str, level: str) -> Text:
    text = Text(f"{HEALTH_SYMBOL.get(level, '·')} ", style=HEALTH_STYLE.get(level, ""))
    text.append(name, style=HEALTH_STYLE.get(level, "") if level in ("error", "warning") else "")
    if layer_type:
        text.append(f" {layer_type}", style="dim")
    return text
