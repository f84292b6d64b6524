"""`ptytui retrain`: retrain the Baseline (default: the supervised U-Net design) on the train split,
save it beside the old model, rewire ptytui.toml to it, then re-run statistics and metrics.
Exit 1 when the retrained model's output is not healthy, 3 when cancelled."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

RETRAIN_HELP = ("Retrain the Baseline as the decision says. --design supervised (default): the "
                "PtychoNN-style U-Net, diffraction -> \\[amplitude, phase], trained on the train split's "
                "ground-truth patches (Y / ground_truth_patches, or cut from objectGuess). --design same: "
                "fine-tune the workspace's gridsize-1 position model fed relative positions. The model is "
                "saved as <models folder>/<name>_retrained_<UTC time>.keras (never over the old one); "
                "ptytui.toml is rewritten atomically: the old entry is kept, relabelled "
                "'<label> (superseded)', and a new entry takes its label (backup in the session folder). "
                "The latest decision must be retrain-baseline (exit 2 otherwise, unless --force). The loss "
                "curve (training and validation loss per epoch) goes to stderr and --json; the weights of "
                "the epoch with the lowest validation loss are saved, with a warning when the last epoch "
                "ended above it. Then statistics on every split and the metrics are re-run (skip with "
                "--no-verify).")


def register(app: typer.Typer) -> None:
    @app.command(help=RETRAIN_HELP)
    def retrain(
        workspace: Path = typer.Argument(..., help="Folder with ptytui.toml, or the toml file."),
        model: Optional[str] = typer.Option(None, "--model", help="Workspace model to replace (default: the one labelled Baseline)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default 6)."),
        design: Optional[str] = typer.Option(None, "--design", help="supervised (default) | same"),
        batch_size: int = typer.Option(16, "--batch-size", help="Training batch size."),
        learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help="Adam learning rate (default 2e-3)."),
        verify: bool = typer.Option(True, "--verify/--no-verify", help="Re-run statistics and metrics afterwards."),
        json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        devices: Optional[str] = typer.Option(None, "--devices", help="cpu | gpu | all"),
        trust: bool = typer.Option(False, "--trust", help="Allow pickled custom objects and unsafe Keras deserialization."),
        seed: int = typer.Option(0, "--seed", help="Seed for initialization and shuffling."),
        force: bool = typer.Option(False, "--force", help="Retrain although the latest decision is not "
                                   "retrain-baseline (the workspace records that it was forced)."),
    ) -> None:
        from rich.console import Console  # noqa: PLC0415

        from ptytui.commands.common import emit_json, open_session, select_devices  # noqa: PLC0415
        from ptytui.errors import EXIT_FINDING, Cancelled  # noqa: PLC0415
        from ptytui.inputs.decisions import current_decision  # noqa: PLC0415
        from ptytui.outcome.retrain import (  # noqa: PLC0415
            EpochDone,
            RetrainCancelled,
            RetrainFinished,
            plan_retrain,
            run_retrain,
            verify_retrained,
        )

        session = open_session(workspace, None, None, trust=trust, seed=seed)
        select_devices(devices)
        decision = current_decision(session.workspace.session_dir)
        plan = plan_retrain(session, model=model, design=design, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, seed=seed, decision=decision, force=force)
        from ptytui.present.tables import print_prose  # noqa: PLC0415 - rich loads with the command

        err = Console(stderr=True)
        for note in plan.notes:
            print_prose(err, f"note: {note}")
        print_prose(err, f"retraining {plan.model} ({plan.design} design, {plan.epochs} epochs on split "
                  f"'{plan.train_split}') -> {plan.out_path}")
        epochs_done, result = [], None
        for event in run_retrain(session, plan):
            if isinstance(event, EpochDone):
                epochs_done.append({"epoch": event.epoch, "loss": event.loss, "val_loss": event.val_loss,
                                    "seconds": round(event.seconds, 3)})
                val = "" if event.val_loss is None else f", validation loss {event.val_loss:.5g}"
                print_prose(err, f"epoch {event.epoch}/{event.epochs}: training loss {event.loss:.5g}{val} "
                          f"({event.seconds:.1f} s)")
            elif isinstance(event, RetrainCancelled):
                raise Cancelled("retrain")
            elif isinstance(event, RetrainFinished):
                result = event.result
        for warning in result.warnings:
            print_prose(err, f"warning: {warning}")
        print_prose(err, f"saved {result.path}; {result.toml_path} now names it [models.{result.new_name}] "
                  f"(previous toml: {result.backup_path})")
        verification = None
        if verify:
            print_prose(err, "re-running statistics and metrics")
            verification = verify_retrained(session.workspace.toml_path, result.new_name, trust=trust, seed=seed)
            from ptytui.quality.comparison_store import save_comparison  # noqa: PLC0415

            save_comparison(verification.comparison, session.workspace.session_dir)
        if json_out:
            emit_json({"retrain": result.to_dict(), "epochs": epochs_done, "notes": plan.notes,
                       "verification": verification.to_dict() if verification else None})
        else:
            from ptytui.commands.compare import results_console  # noqa: PLC0415

            console = results_console()
            print_prose(console, f"retrained {result.model} -> {result.new_name} ({result.path})")
            if verification is not None:
                from ptytui.commands.compare import render_comparison  # noqa: PLC0415
                from ptytui.commands.stats import render_table  # noqa: PLC0415

                render_table(verification.runs, console)
                render_comparison(verification.comparison, console)
                console.print("retrained output healthy" if verification.healthy else
                              "retrained output NOT healthy: " + "; ".join(verification.problems),
                              markup=False, highlight=False)
        if verification is not None and not verification.healthy:
            raise typer.Exit(EXIT_FINDING)
