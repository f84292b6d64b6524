"""The export's PNG figures (matplotlib, Agg): reconstructions beside the ground truth, the
per-layer nonzero fraction of every model, and scan positions against each model's canvas."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptytui.core.atomic import atomic_open
from ptytui.diagnosis.geometry import canvas_of, fed_offsets, visible_fraction
from ptytui.running.inference import feed_inputs
from ptytui.running.trace import trace_model

# Groups per split in the probe batch traced for the per-layer figure.
TRACE_GROUPS = 8


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display), imported on first use: only an
    export with figures pays for matplotlib."""
    import matplotlib  # noqa: PLC0415 - see the docstring

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415 - see the docstring

    return plt


def save_figure(fig, path: Path) -> Path:
    plt = pyplot()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _ground_truth_window(obj: np.ndarray, origin, shape) -> np.ndarray | None:
    if origin is None:
        return None
    row0, col0 = int(round(origin[0])), int(round(origin[1]))
    height, width = shape
    out = np.zeros(shape, dtype=np.complex64)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + height, obj.shape[0]), min(col0 + width, obj.shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = obj[r0:r1, c0:c1]
    return out


def figure_reconstructions(session, comparison, path: Path) -> Path | None:
    """One row per evaluated entry: amplitude, phase, and the ground truth of the same region."""
    entries = [e for e in comparison.entries if e.canvas is not None]
    if not entries:
        return None
    plt = pyplot()
    truth = {}
    fig, axes = plt.subplots(len(entries), 4, figsize=(12, 3 * len(entries)), squeeze=False)
    for row, entry in enumerate(entries):
        if entry.split not in truth:
            opened = session.split(entry.split)
            truth[entry.split] = np.asarray(opened.object) if opened.object is not None else None
        canvas = np.asarray(entry.canvas)
        gt = truth[entry.split]
        window = _ground_truth_window(gt, entry.origin, canvas.shape) if gt is not None else None
        if window is None and gt is not None:
            window = gt
        panels = [(np.abs(canvas), f"{entry.model_id}: amplitude"), (np.angle(canvas), f"{entry.model_id}: phase")]
        if window is not None:
            panels += [(np.abs(window), "ground truth: amplitude"), (np.angle(window), "ground truth: phase")]
        for col in range(4):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(panels):
                image, title = panels[col]
                shown = ax.imshow(image, cmap="gray" if col % 2 == 0 else "twilight")
                ax.set_title(f"{title} ({entry.split})", fontsize=8)
                fig.colorbar(shown, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def figure_layers(session, path: Path, *, groups: int = TRACE_GROUPS) -> Path | None:
    """Per-layer nonzero fraction of every model on a small probe batch of every split."""
    workspace = session.workspace
    traces: dict[str, list] = {}
    for name, entry in workspace.models.items():
        try:
            loaded = session.model(name)
        except Exception:  # noqa: BLE001 - a model that cannot load is reported elsewhere
            continue
        for split_name in workspace.splits:
            try:
                opened = session.split(split_name)
                grouping = session.grouping(split_name, session.gridsize(name))
                batch = grouping.batch(opened, np.arange(min(groups, len(grouping.indices))))
                fed = feed_inputs(loaded, batch, positions=entry.positions or "relative",
                                  intensity_scale=entry.intensity_scale if entry.intensity_scale is not None else "apply")
                trace = trace_model(loaded.model, fed, model_name=name, split=split_name,
                                    positions=entry.positions, with_weights=False)
            except Exception:  # noqa: BLE001
                continue
            traces.setdefault(name, []).append(trace)
    if not traces:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(traces), 1, figsize=(11, 3.2 * len(traces)), squeeze=False)
    for row, (name, model_traces) in enumerate(traces.items()):
        ax = axes[row][0]
        labels = None
        for trace in model_traces:
            layers = [entry for entry in trace.layers if not entry.is_container]
            labels = [entry.path for entry in layers]
            ax.plot(range(len(layers)), [entry.nonzero_fraction for entry in layers], marker="o",
                    label=f"{trace.split} (positions {trace.positions or 'relative'})")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("nonzero fraction")
        ax.set_title(f"{name}: per-layer output nonzero fraction ({groups} groups per split)", fontsize=9)
        if labels:
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=6)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def figure_positions(session, path: Path) -> Path | None:
    """Scan positions per split on the object, and for each position-taking model the offsets as
    fed per split against its canvas: the box |dx|, |dy| < N keeps part of each patch visible."""
    workspace = session.workspace
    plt = pyplot()
    panels = [None]
    cards = {}
    for name in workspace.models:
        try:
            card = session.model(name).card
        except Exception:  # noqa: BLE001
            continue
        if getattr(card, "takes_positions", False):
            panels.append(name)
            cards[name] = card
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax = axes[0][0]
    extent = None
    for i, split_name in enumerate(workspace.splits):
        opened = session.split(split_name)
        ax.scatter(opened.xcoords, opened.ycoords, s=4, color=colours[i % len(colours)], label=split_name)
        if opened.object is not None:
            extent = opened.object.shape
    if extent is not None:
        ax.add_patch(plt.Rectangle((0, 0), extent[1], extent[0], fill=False, color="k", lw=1))
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_title("scan positions per split (object pixels)", fontsize=9)
    ax.set_xlabel("x (column)")
    ax.set_ylabel("y (row)")
    ax.legend(fontsize=7)
    for col, name in enumerate(panels[1:], start=1):
        ax = axes[0][col]
        entry = workspace.models[name]
        mode = entry.positions or "relative"
        card = cards[name]
        patch = None
        canvas = None
        geometry = canvas_of(card)
        if geometry is not None:
            patch, canvas = geometry.patch, geometry.canvas
        for i, split_name in enumerate(workspace.splits):
            opened = session.split(split_name)
            grouping = session.grouping(split_name, session.gridsize(name))
            offsets = fed_offsets(opened, grouping, mode).reshape(-1, 2)
            label = split_name
            if patch:
                label += f" (visible {visible_fraction(offsets, patch).mean():.1%})"
            ax.scatter(offsets[:, 0], offsets[:, 1], s=4, color=colours[i % len(colours)], label=label)
        patch = patch or opened.N
        ax.add_patch(plt.Rectangle((-patch, -patch), 2 * patch, 2 * patch, fill=False, color="r", lw=1,
                                   label=f"|dx|, |dy| < N = {patch} (part visible)"))
        if canvas:
            ax.add_patch(plt.Rectangle((-canvas / 2, -canvas / 2), canvas, canvas, fill=False, color="k",
                                       lw=1, ls="--", label=f"canvas P = {canvas}"))
        ax.invert_yaxis()
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{name}: offsets as fed ({mode}) vs canvas", fontsize=9)
        ax.set_xlabel("dx (px)")
        ax.set_ylabel("dy (px)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)
