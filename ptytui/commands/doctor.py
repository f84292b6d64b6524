"""`ptytui doctor`: what this environment offers (Python, TensorFlow, Keras, devices, optional
packages), so a user on a GPU node sees at once what TensorFlow sees."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import time

import typer


def environment_report() -> dict:
    from importlib import metadata  # noqa: PLC0415

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    report: dict = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {name: version(name) for name in (
            "ptytui", "tensorflow", "tensorflow-cpu", "keras", "numpy", "scipy", "scikit-image",
            "h5py", "textual", "textual-plot", "rich-pixels", "typer")},
        "ptycho_importable": importlib.util.find_spec("ptycho") is not None,
        "env": {k: os.environ.get(k) for k in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS",
                                               "CUDA_VISIBLE_DEVICES", "NO_COLOR", "TEXTUAL_THEME")},
        "tensorflow": None,
        "problems": [],
    }
    if report["env"]["TF_ENABLE_ONEDNN_OPTS"] == "0":
        report["problems"].append("TF_ENABLE_ONEDNN_OPTS=0 disables oneDNN: ~40% slower on CPU")
    if importlib.util.find_spec("tensorflow") is None:
        report["problems"].append("TensorFlow is not installed: pip install 'ptytui[cpu]' or 'ptytui[gpu]'")
        return report
    started = time.perf_counter()
    from ptytui.core.tfload import keras, tf  # noqa: PLC0415

    tf_module = tf()
    import_seconds = time.perf_counter() - started
    gpus = tf_module.config.list_physical_devices("GPU")
    details = []
    for gpu in gpus:
        try:
            info = tf_module.config.experimental.get_device_details(gpu)
        except Exception:  # noqa: BLE001 - details are optional
            info = {}
        details.append({"name": gpu.name, "details": {k: str(v) for k, v in info.items()},
                        "memory_growth": tf_module.config.experimental.get_memory_growth(gpu)})
    report["tensorflow"] = {
        "version": tf_module.__version__,
        "keras": keras().__version__,
        "import_seconds": round(import_seconds, 3),
        "built_with_cuda": tf_module.test.is_built_with_cuda(),
        "devices": [d.name for d in tf_module.config.list_physical_devices()],
        "gpus": details,
    }
    from ptytui.running import health_kernel  # noqa: PLC0415 - imports TensorFlow; builds the kernel once

    kernel_status = health_kernel.status()
    report["tensorflow"]["layer_health_kernel"] = kernel_status
    if kernel_status.startswith("stock (the kernel's build failed") or "no C++ compiler" in kernel_status:
        report["problems"].append(f"layer health uses {kernel_status}: live layer health costs about "
                                  "1.5x more on CPU without the kernel")
    if not gpus and tf_module.test.is_built_with_cuda():
        report["problems"].append("TensorFlow was built with CUDA but sees no GPU (check drivers, CUDA_VISIBLE_DEVICES)")
    return report


def register(app: typer.Typer) -> None:
    @app.command(help="Show the environment: Python, TensorFlow, Keras, devices, optional packages.")
    def doctor(json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout.")) -> None:
        report = environment_report()
        if json_out:
            from ptytui.commands.common import emit_json  # noqa: PLC0415

            emit_json(report)
            return
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        console = Console()
        table = Table(title="ptytui doctor", show_header=False, title_justify="left")
        table.add_column("what")
        table.add_column("value")
        table.add_row("python", f"{report['python']} ({report['platform']}, {report['cpu_count']} CPUs)")
        for name, ver in report["packages"].items():
            table.add_row(name, ver or "-")
        table.add_row("ptycho package", "importable" if report["ptycho_importable"] else "not installed")
        tf_info = report["tensorflow"]
        if tf_info:
            table.add_row("TensorFlow", f"{tf_info['version']} (Keras {tf_info['keras']}), import "
                                        f"{tf_info['import_seconds']} s")
            table.add_row("devices", ", ".join(tf_info["devices"]))
            table.add_row("layer-health kernel", tf_info["layer_health_kernel"])
            for gpu in tf_info["gpus"]:
                table.add_row(gpu["name"], f"{gpu['details'].get('device_name', '')} memory growth "
                                           f"{'on' if gpu['memory_growth'] else 'off'}")
        console.print(table)
        for problem in report["problems"]:
            console.print(f"[bold red]problem:[/] {problem}")
