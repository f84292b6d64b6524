"""Retrain the Baseline the way the decision says, as a generator of epoch events (a live loss
curve) that can be cancelled; save the new model beside the old one and point the workspace at it.

Designs
-------
``supervised`` (default): the PtychoNN-style U-Net of the scenario (``scenario.zoo.
build_supervised_unet``): diffraction amplitude (B, N, N, 1) -> [amplitude, phase], trained on
the train split's ground-truth patches (``Y`` / ``ground_truth_patches``, or cut from
``objectGuess`` at the scan positions), MSE on amplitude plus MSE on phase. What "Baseline"
should have been.
``same``: the workspace's own position-taking model (gridsize 1), fine-tuned on the same
ground-truth patches while fed relative positions (zeros at gridsize 1), MSE on the complex patch.

The workspace
-------------
The new model is saved as ``<old model's folder>/<name>_retrained_<UTC timestamp>.keras``
(never over the old file). ``ptytui.toml`` is rewritten atomically: the old ``[models.NAME]``
table is kept, relabelled ``"<label> (superseded)"`` with a description saying by what; a new
table ``[models.NAME_retrained]`` (suffixed when taken) with the old label is appended. The
previous toml is copied to ``<session>/ptytui.toml.before-retrain-<timestamp>``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from ptytui.core.atomic import atomic_path, atomic_write_text
from ptytui.core.events import EngineEvent, RunCancelled, RunFailed
from ptytui.core.tfload import keras, tf
from ptytui.errors import Cancelled, InputError, UsageError
from ptytui.inputs.decisions import DECISIONS_FILE, SUPERSEDED_SUFFIX, is_superseded_label
from ptytui.inputs.workspace import load_workspace
from ptytui.networks.architectures import build_supervised_unet
from ptytui.networks.training import compiled_train_step
from ptytui.quality.compare import compare_workspace
from ptytui.running.inference import feed_inputs, is_cancelled, run_to_result
from ptytui.running.session import Session

__all__ = [
    "DESIGNS",
    "EpochDone",
    "RetrainCancelled",
    "RetrainFinished",
    "RetrainPlan",
    "RetrainResult",
    "RetrainStarted",
    "choose_baseline",
    "default_filters",
    "ground_truth_patches",
    "plan_retrain",
    "point_workspace_at",
    "retrain_events",
    "retrained_at",
    "loss_curve_warnings",
    "run_retrain",
    "verify_retrained",
]

DESIGNS = ("supervised", "same")
DEFAULT_EPOCHS = 6
DEFAULT_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE = 2e-3
# Test-split samples used for the validation loss after each epoch.
VALIDATION_SAMPLES = 256


# ---- events -------------------------------------------------------------------------------------

@dataclass
class RetrainStarted(EngineEvent):
    design: str = "supervised"
    epochs: int = 0
    n_samples: int = 0
    batch_size: int = 0
    out_path: str = ""


@dataclass
class EpochDone(EngineEvent):
    """One epoch: mean training loss over the epoch, validation loss on the test split (or None)."""

    epoch: int = 0
    epochs: int = 0
    loss: float = float("nan")
    val_loss: float | None = None
    seconds: float = 0.0


@dataclass
class RetrainResult:
    """A finished retrain: the new model, where it is wired, and its loss curve."""

    model: str  # the workspace model that was replaced
    new_name: str  # the new workspace model name
    path: Path  # the saved .keras model
    design: str
    label: str
    history: list[float]
    val_history: list[float | None]
    toml_path: Path | None = None
    backup_path: Path | None = None
    seconds: float = 0.0
    n_samples: int = 0
    best_epoch: int | None = None  # epoch of the lowest validation loss (its weights were saved)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model, "new_name": self.new_name, "path": str(self.path),
                "design": self.design, "label": self.label, "history": list(self.history),
                "val_history": list(self.val_history), "best_epoch": self.best_epoch,
                "warnings": list(self.warnings),
                "toml_path": str(self.toml_path) if self.toml_path else None,
                "backup_path": str(self.backup_path) if self.backup_path else None,
                "seconds": round(self.seconds, 3), "n_samples": self.n_samples}


@dataclass
class RetrainFinished(EngineEvent):
    result: RetrainResult | None = None


@dataclass
class RetrainCancelled(EngineEvent):
    epoch: int = 0  # epochs completed before the cancel; nothing was saved


# ---- planning ----------------------------------------------------------------------------------

@dataclass
class RetrainPlan:
    """What to retrain and how (see the module docstring for the designs)."""

    model: str
    design: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    filters: tuple[int, ...]
    train_split: str
    validation_split: str | None
    out_path: Path
    new_name: str
    stamp: str
    notes: list[str] = field(default_factory=list)
    decision: str = "no decision recorded"  # how the retrain relates to the latest decision


def choose_baseline(workspace, model: str | None = None) -> str:
    """The workspace model to retrain: ``model`` if given, else the one labelled "Baseline"."""
    if model is not None:
        workspace.model(model)  # InputError naming the known models
        return model
    baselines = [name for name, entry in workspace.models.items() if entry.label == "Baseline"]
    if len(baselines) == 1:
        return baselines[0]
    where = str(workspace.toml_path or "workspace")
    if not baselines:
        raise InputError(where, "a model labelled \"Baseline\" to retrain (or --model NAME)",
                         f"labels {sorted({e.label for e in workspace.models.values()})}")
    raise InputError(where, "one model labelled \"Baseline\" (or --model NAME)", f"{baselines}")


def default_filters(patch_size: int) -> tuple[int, ...]:
    """Encoder widths of the U-Net for N x N patterns: deeper for larger N; N must be divisible
    by 2 ** depth."""
    for filters in ((8, 16, 32), (8, 16), (8,)):
        if patch_size >= 16 * len(filters) and patch_size % (2 ** len(filters)) == 0:
            return filters
    if patch_size % 2 == 0:
        return (8,)
    raise InputError("retrain", "an even pattern size N for the U-Net's pooling", f"N = {patch_size}")


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _check_decision(decision: dict | None, workspace, *, force: bool, notes: list[str]) -> str:
    """The retrain follows the session's latest decision: refused (UsageError, exit 2) when that
    decision is anything but retrain-baseline, unless ``force``. Returns how the retrain relates to
    the decision, in words, for the workspace's record (see ``point_workspace_at``)."""
    if decision is None:
        notes.append("no decision recorded: retraining as asked (record why with 'ptytui decide "
                     "WORKSPACE --option retrain-baseline --reason ...')")
        return "no decision recorded"
    option, when = decision.get("option"), decision.get("when", "?")
    if option == "retrain-baseline":
        return f"following decision retrain-baseline of {when}"
    shown = option + (f":{decision['intervention']}" if decision.get("intervention") else "")
    if not force:
        log = Path(workspace.session_dir) / DECISIONS_FILE
        raise UsageError(f"retrain: the latest decision is {shown} ({when}, {log}), not retrain-baseline; "
                         "record 'ptytui decide WORKSPACE --option retrain-baseline --reason ...' first, "
                         "or pass --force to retrain anyway")
    notes.append(f"--force: retraining although the latest decision is {shown} ({when})")
    return f"forced against decision {shown} of {when}"


def plan_retrain(session, *, model: str | None = None, design: str | None = None, epochs: int | None = None,
                 batch_size: int | None = None, learning_rate: float | None = None, seed: int = 0,
                 filters: tuple[int, ...] | None = None, decision: dict | None = None,
                 force: bool = False) -> RetrainPlan:
    """Resolve what ``run_retrain`` will do (nothing is trained or written).

    ``decision`` is the session's latest decision (None: none recorded); anything but
    retrain-baseline is refused unless ``force`` (see ``_check_decision``). ``design`` defaults
    to the decision's ``design`` key, else "supervised". The train split is ``train`` (or the
    only split); validation uses ``test`` when it exists.
    """
    workspace = session.workspace
    name = choose_baseline(workspace, model)
    chosen = design or (decision or {}).get("design") or "supervised"
    if chosen not in DESIGNS:
        raise UsageError(f"--design: expected one of {', '.join(DESIGNS)}, found {chosen!r}")
    epochs = DEFAULT_EPOCHS if epochs is None else int(epochs)
    if epochs < 1:
        raise UsageError(f"--epochs: expected a positive integer, found {epochs}")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, found {batch_size}")
    rate = DEFAULT_LEARNING_RATE if learning_rate is None else float(learning_rate)
    if not rate > 0:
        raise UsageError(f"--learning-rate: expected a positive number, found {learning_rate}")
    if "train" in workspace.splits:
        train_split = "train"
    elif len(workspace.splits) == 1:
        train_split = next(iter(workspace.splits))
    else:
        raise InputError(str(workspace.toml_path or "workspace"), "a split named 'train' to retrain on",
                         f"splits {sorted(workspace.splits)}")
    validation = "test" if "test" in workspace.splits and train_split != "test" else None
    split = session.split(train_split)
    notes = []
    if chosen == "same" and session.gridsize(name) != 1:
        raise UsageError(f"--design same: retrains a gridsize-1 position model; {name!r} has gridsize "
                         f"{session.gridsize(name)} (use --design supervised)")
    filters = tuple(filters) if filters else default_filters(split.N)
    stamp = _timestamp()
    entry = workspace.model(name)
    folder = entry.path.parent
    out_path = folder / f"{name}_retrained_{stamp}.keras"
    new_name = f"{name}_retrained"
    n = 2
    while new_name in workspace.models:
        new_name, n = f"{name}_retrained_{n}", n + 1
    following = _check_decision(decision, workspace, force=force, notes=notes)
    return RetrainPlan(model=name, design=chosen, epochs=epochs, batch_size=batch_size, learning_rate=rate,
                       seed=int(seed), filters=filters, train_split=train_split, validation_split=validation,
                       out_path=out_path, new_name=new_name, stamp=stamp, notes=notes, decision=following)


# ---- training data -----------------------------------------------------------------------------

def ground_truth_patches(split, idx: np.ndarray) -> np.ndarray:
    """Ground-truth object patches (B, N, N) complex64 for patterns ``idx`` of ``split``.

    From ``Y`` / ``ground_truth_patches`` when the split has them; else cut from ``objectGuess``
    at the scan positions with bilinear interpolation (the metrics convention: patch pixel
    (i, j) shows object row y - N//2 + i, column x - N//2 + j).
    """
    idx = np.asarray(idx, dtype=np.int64)
    patches = split.ground_truth_batch(idx)
    if patches is not None:
        return patches
    if split.object is None:
        raise InputError(str(split.path), "ground-truth patches (Y / ground_truth_patches) or objectGuess "
                         "to retrain on", "neither")
    from scipy import ndimage  # noqa: PLC0415

    obj = np.asarray(split.object)
    n = split.N
    grid = np.arange(n) - n // 2
    out = np.empty((idx.size, n, n), dtype=np.complex64)
    for k, i in enumerate(idx):
        rows = split.ycoords[i] + grid[:, None] + np.zeros((1, n))
        cols = split.xcoords[i] + grid[None, :] + np.zeros((n, 1))
        coords = np.stack([rows, cols])
        real = ndimage.map_coordinates(obj.real, coords, order=1, mode="constant")
        imag = ndimage.map_coordinates(obj.imag, coords, order=1, mode="constant")
        out[k] = real + 1j * imag
    return out


# ---- training --------------------------------------------------------------------------------

def _build_model(session, plan: RetrainPlan, patch_size: int):

    k = keras()
    k.utils.set_random_seed(plan.seed)
    if plan.design == "supervised":

        return build_supervised_unet(patch_size, plan.filters)
    loaded = session.model(plan.model)
    clone = k.models.clone_model(loaded.model)
    clone.set_weights(loaded.model.get_weights())
    return clone


def _batches(rng: np.random.Generator, count: int, batch_size: int) -> list[np.ndarray]:
    order = rng.permutation(count)
    return [np.sort(order[start:start + batch_size]) for start in range(0, count, batch_size)]


def retrain_events(session, plan: RetrainPlan, *, cancel=None) -> Iterator[EngineEvent]:
    """Train as ``plan`` says, yielding ``RetrainStarted``, one ``EpochDone`` per epoch, then
    ``RetrainFinished`` (the model saved, the workspace NOT yet rewired: see ``run_retrain``) or
    ``RetrainCancelled`` (nothing saved).

    Memory is bounded by one batch: patterns and ground-truth patches are read per batch from the
    (memory-mapped) split.
    """

    tf_, k = tf(), keras()
    started = time.perf_counter()
    split = session.split(plan.train_split)
    n = split.N
    count = split.M
    yield RetrainStarted(plan.model, plan.train_split, design=plan.design, epochs=plan.epochs,
                         n_samples=count, batch_size=plan.batch_size, out_path=str(plan.out_path))
    model = _build_model(session, plan, n)
    optimizer = k.optimizers.Adam(plan.learning_rate)

    prepare, loss_of, input_specs, target_specs = _training_problem(session, plan, split, n)
    n_inputs = len(input_specs)
    train_step = compiled_train_step(model, optimizer, loss_of, n_inputs, input_specs + target_specs)

    @tf_.function(input_signature=input_specs + target_specs)
    def eval_step(*tensors):
        inputs = list(tensors[:n_inputs])
        predicted = model(inputs if n_inputs > 1 else inputs[0], training=False)
        return loss_of(list(tensors[n_inputs:]), predicted)

    validation = _validation_subset(session, plan)

    rng = np.random.default_rng(plan.seed)
    history: list[float] = []
    val_history: list[float | None] = []
    best: tuple[float, int, list] | None = None  # (validation loss, epoch, weights)
    for epoch in range(1, plan.epochs + 1):
        epoch_started = time.perf_counter()
        total, seen = 0.0, 0
        for idx in _batches(rng, count, plan.batch_size):
            if cancel is not None and is_cancelled(cancel):
                yield RetrainCancelled(plan.model, plan.train_split, epoch=epoch - 1)
                return
            inputs, targets = prepare(split, idx)
            loss = float(train_step(*inputs, *targets))
            total += loss * idx.size
            seen += idx.size
        val_loss = _validation_loss(eval_step, prepare, validation, plan.batch_size)
        if val_loss is not None:
            if best is None or val_loss < best[0]:
                # The retrained models are small (a U-Net of ~1e5 weights): a copy per better epoch
                # is cheap, and the saved model is the one that generalized best.
                best = (val_loss, epoch, [np.array(w) for w in model.get_weights()])
        history.append(total / max(seen, 1))
        val_history.append(val_loss)
        yield EpochDone(plan.model, plan.train_split, epoch=epoch, epochs=plan.epochs, loss=history[-1],
                        val_loss=val_loss, seconds=time.perf_counter() - epoch_started)

    if cancel is not None and is_cancelled(cancel):
        yield RetrainCancelled(plan.model, plan.train_split, epoch=plan.epochs)
        return
    warnings = loss_curve_warnings(history, val_history)
    if best is not None and best[1] != plan.epochs:
        model.set_weights(best[2])
    with atomic_path(plan.out_path, suffix=".keras") as temporary:
        model.save(temporary)
    entry = session.model_entry(plan.model)
    result = RetrainResult(model=plan.model, new_name=plan.new_name, path=plan.out_path, design=plan.design,
                           label=entry.label, history=history, val_history=val_history,
                           seconds=time.perf_counter() - started, n_samples=count,
                           best_epoch=best[1] if best else None, warnings=warnings)
    yield RetrainFinished(plan.model, plan.train_split, result=result)


def _training_problem(session, plan: RetrainPlan, split, n: int):
    """What one design trains on: (prepare(split, ids) -> (inputs, targets), loss_of(targets,
    predicted), input specs, target specs). Supervised: diffraction -> amplitude and phase;
    PINN: the model's own inputs (relative positions) -> the complex patch's real and imaginary parts."""
    tf_ = tf()
    count = split.M
    if plan.design == "supervised":
        def prepare(opened, idx):
            diffraction = opened.diffraction_batch(idx)[..., None]
            truth = ground_truth_patches(opened, idx)[..., None]
            return [diffraction], [np.abs(truth).astype(np.float32), np.angle(truth).astype(np.float32)]

        def loss_of(targets, predicted):
            amplitude, phase = predicted
            return (tf_.reduce_mean(tf_.square(amplitude - targets[0]))
                    + tf_.reduce_mean(tf_.square(phase - targets[1])))

        input_specs = [tf_.TensorSpec((None, n, n, 1), tf_.float32)]
        target_specs = [tf_.TensorSpec((None, n, n, 1), tf_.float32)] * 2
    else:
        loaded = session.model(plan.model)
        entry = session.model_entry(plan.model)
        grouping_cache: dict[str, object] = {}

        def prepare(opened, idx):
            grouping = grouping_cache.get(opened.name)
            if grouping is None:
                grouping = grouping_cache[opened.name] = session.grouping(opened.name, 1)
            batch = grouping.batch(opened, idx)
            fed = feed_inputs(loaded, batch, positions="relative", intensity_scale=entry.intensity_scale)
            ordered = [fed[spec["name"]] for spec in loaded.card.inputs]
            truth = ground_truth_patches(opened, idx)[..., None]
            return ordered, [truth.real.astype(np.float32), truth.imag.astype(np.float32)]

        def loss_of(targets, predicted):
            predicted = tf_.cast(predicted, tf_.complex64)
            return (tf_.reduce_mean(tf_.square(tf_.math.real(predicted) - targets[0]))
                    + tf_.reduce_mean(tf_.square(tf_.math.imag(predicted) - targets[1])))

        probe_inputs, _ = prepare(split, np.arange(min(1, count)))
        input_specs = [tf_.TensorSpec((None,) + a.shape[1:], tf_.as_dtype(a.dtype)) for a in probe_inputs]
        target_specs = [tf_.TensorSpec((None, n, n, 1), tf_.float32)] * 2
    return prepare, loss_of, input_specs, target_specs


def _validation_subset(session, plan: RetrainPlan):
    """(split, ids) the validation loss is measured on, or None without a validation split or
    ground truth: an evenly spread subset, so the loss covers the whole split's geometry."""
    if not plan.validation_split:
        return None
    opened = session.split(plan.validation_split)
    if opened.ground_truth is None and opened.object is None:
        return None
    take = np.unique(np.linspace(0, opened.M - 1, min(VALIDATION_SAMPLES, opened.M)).astype(np.int64))
    return opened, take


def _validation_loss(eval_step, prepare, validation, batch_size: int) -> float | None:
    """The mean loss over the validation subset (None without one)."""
    if validation is None:
        return None
    opened, take = validation
    total = 0.0
    for start in range(0, take.size, batch_size):
        idx = take[start:start + batch_size]
        inputs, targets = prepare(opened, idx)
        total += float(eval_step(*inputs, *targets)) * idx.size
    return total / take.size


def loss_curve_warnings(history: list[float], val_history: list[float | None]) -> list[str]:
    """One line when the validation loss ended above its best (the saved weights are the best
    epoch's, see ``retrain_events``); empty otherwise or without validation."""
    scored = [(loss, epoch) for epoch, loss in enumerate(val_history, start=1) if loss is not None]
    if len(scored) < 2:
        return []
    best_loss, best_epoch = min(scored)
    last_loss, last_epoch = scored[-1]
    if last_epoch == best_epoch or not last_loss > best_loss:
        return []
    return [f"validation loss ended at {last_loss:.4g} (epoch {last_epoch}), above its best {best_loss:.4g} "
            f"(epoch {best_epoch}; training loss {history[best_epoch - 1]:.4g} -> {history[-1]:.4g}): the "
            f"model overfits the train split or the learning rate is too high; the weights of epoch "
            f"{best_epoch} were saved (try fewer --epochs or a lower --learning-rate)"]


# ---- rewiring the workspace ----------------------------------------------------------------------

def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes for quotes, backslashes, \uXXXX).
    return json.dumps(text, ensure_ascii=False)


def _table_header(name: str) -> re.Pattern:
    quoted = re.escape(name)
    return re.compile(rf"""^\s*\[\s*models\s*\.\s*(?:{quoted}|"{quoted}"|'{quoted}')\s*\]\s*(?:#.*)?$""")


def _bare_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_string(name)


def _rewrite_old_table(lines: list[str], name: str, label: str, description: str) -> list[str]:
    header = _table_header(name)
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        raise InputError("ptytui.toml", f"a [models.{name}] table", "none (was it written as an inline table?)")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
    out = lines[:start + 1]
    seen = {"label": False, "description": False}
    for line in lines[start + 1:end]:
        key = re.match(r"^\s*(label|description)\s*=", line)
        if key:
            seen[key.group(1)] = True
            value = label if key.group(1) == "label" else description
            out.append(f"{key.group(1)} = {_toml_string(value)}")
        else:
            out.append(line)
    insert_at = start + 1
    for key, value in (("label", label), ("description", description)):
        if not seen[key]:
            out.insert(insert_at, f"{key} = {_toml_string(value)}")
            insert_at += 1
    return out + lines[end:]


def point_workspace_at(workspace, result: RetrainResult, plan: RetrainPlan, *, gridsize: int | None = None,
                       old_entry=None) -> tuple[Path, Path]:
    """Rewrite ``ptytui.toml`` so the retrained model takes the old one's label (see the module
    docstring); returns (toml path, backup path). Validated by re-reading; restored on failure."""

    if workspace.toml_path is None:
        raise UsageError("retrain: needs a workspace folder with ptytui.toml (not --model/--data) to "
                         "record the retrained model")
    toml_path = Path(workspace.toml_path)
    old_text = toml_path.read_text(encoding="utf-8")
    entry = old_entry or workspace.model(plan.model)
    backup = Path(workspace.session_dir) / f"{toml_path.name}.before-retrain-{plan.stamp}"
    atomic_write_text(backup, old_text)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = old_text.splitlines()
    lines = _rewrite_old_table(lines, plan.model, entry.label + SUPERSEDED_SUFFIX,
                               f"superseded by [models.{plan.new_name}] (ptytui retrain, {when}; {plan.decision})")
    relative = Path(result.path)
    try:
        relative = relative.resolve().relative_to(toml_path.resolve().parent)
    except ValueError:
        pass
    table = [
        "",
        f"# Added by ptytui retrain at {when}: {plan.design} design trained on split "
        f"'{plan.train_split}' for {plan.epochs} epochs; replaces [models.{_bare_key(plan.model)}] (kept above).",
        f"[models.{_bare_key(plan.new_name)}]",
        f"path = {_toml_string(relative.as_posix())}",
        f"label = {_toml_string(entry.label)}",
    ]
    if plan.design == "supervised":
        table += ["gridsize = 1", 'intensity_scale = "none"', 'expected_kind = "supervised"']
    else:
        table += [f"gridsize = {int(gridsize or 1)}", 'positions = "relative"']
        scale = entry.intensity_scale
        table.append(f"intensity_scale = {_toml_string(scale) if isinstance(scale, str) else repr(float(scale))}")
    table.append(f"description = {_toml_string(f'retrained from {plan.model} by ptytui retrain ({when}; {plan.decision})')}")
    new_text = "\n".join(lines).rstrip("\n") + "\n" + "\n".join(table) + "\n"
    atomic_write_text(toml_path, new_text)
    try:
        load_workspace(toml_path)
    except Exception:
        atomic_write_text(toml_path, old_text)
        raise
    return toml_path, backup


_SUPERSEDED_AT = re.compile(r"superseded by \[models\.[^\]]+\] \(ptytui retrain, ([0-9T:+\-]+)")


def retrained_at(workspace) -> datetime | None:
    """When a retrain last rewired ``workspace`` (read from the superseded model's description
    that ``point_workspace_at`` writes), or None when no model was superseded."""
    times = []
    for entry in workspace.models.values():
        found = _SUPERSEDED_AT.search(str(getattr(entry, "description", None) or ""))
        if found and is_superseded_label(entry.label):
            try:
                times.append(datetime.fromisoformat(found.group(1)))
            except ValueError:
                continue
    return max(times) if times else None


def run_retrain(session, plan: RetrainPlan, *, cancel=None) -> Iterator[EngineEvent]:
    """``retrain_events`` then ``point_workspace_at``: the ``RetrainFinished`` event carries the
    result with ``toml_path`` / ``backup_path`` set (the workspace now names the new model)."""
    for event in retrain_events(session, plan, cancel=cancel):
        if isinstance(event, RetrainFinished) and event.result is not None:
            toml_path, backup = point_workspace_at(session.workspace, event.result, plan,
                                                   gridsize=session.gridsize(plan.model))
            event.result.toml_path, event.result.backup_path = toml_path, backup
        yield event


@dataclass
class RetrainVerification:
    """Statistics of the retrained model on every split and the comparison after retraining."""

    runs: list  # RunResult per split
    comparison: object  # compare.Comparison
    healthy: bool  # every amplitude output of the new model is mostly nonzero and finite
    problems: list[str]

    def to_dict(self) -> dict:
        return {"runs": [run.to_dict() for run in self.runs], "healthy": self.healthy,
                "problems": list(self.problems), "comparison": self.comparison.to_dict()}


def verify_retrained(workspace_path, new_name: str, *, batch_size: int = 64, trust: bool = False,
                     seed: int = 0, cancel=None, progress=None,
                     min_nonzero_fraction: float = 0.99) -> RetrainVerification:
    """Re-run statistics (every split) and metrics on the rewired workspace.

    ``healthy`` is False when an output record of the new model has a nonzero fraction below
    ``min_nonzero_fraction`` (phase records excluded: a phase of 0 can be legitimate) or holds
    NaN / Inf; ``problems`` says which.
    """

    session = Session.open(workspace_path, trust=trust, seed=seed, batch_size=batch_size)
    runs, problems = [], []
    for plan in session.plan(models=[new_name]):
        outcome = run_to_result(session.run(plan, cancel=cancel), progress)
        if isinstance(outcome, RunCancelled):
            raise Cancelled("verification of the retrained model")
        if isinstance(outcome, RunFailed) or outcome is None:
            problems.append(f"{new_name}/{plan.split}: failed to run: {getattr(outcome, 'message', '?')}")
            continue
        runs.append(outcome)
        for output, record in outcome.outputs.items():
            if record.nan_count or record.inf_count:
                problems.append(f"{new_name}/{plan.split}/{output}: {record.nan_count} NaN, {record.inf_count} Inf")
            if not output.endswith(".phase") and record.count and record.nonzero_fraction < min_nonzero_fraction:
                problems.append(f"{new_name}/{plan.split}/{output}: nonzero fraction "
                                f"{record.nonzero_fraction:.4f} < {min_nonzero_fraction}")
    comparison = compare_workspace(session, cancel=cancel)
    return RetrainVerification(runs=runs, comparison=comparison, healthy=not problems, problems=problems)
