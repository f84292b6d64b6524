"""The headless commands at 80 columns: no line longer than 80 except one holding a whole path,
every number on screen equal to its --json value at the shown precision (never split across
lines), every name shown whole so that two rows never look alike."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from ptytui.cli import main
from tests.helpers_compare import shared_workspace
from tests.helpers_npz import make_arrays, write_npz

WIDTH = 80
NUMBER = re.compile(r"^-?\d[\d,]*(\.\d+)?(e[-+]\d+)?%?$")


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))


def run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


def assert_fits(text: str) -> None:
    """Lines fit the width, unless a whole path (a token with '/') is what makes them long."""
    for line in text.splitlines():
        if len(line) <= WIDTH:
            continue
        longest = max(line.split(), key=len)
        assert "/" in longest and len(line) - len(longest) < WIDTH, f"line too long: {line!r}"


def section(text: str, title: str) -> list[str]:
    """The rows of the table under ``title`` (after its header rule, up to the blank line)."""
    lines = text.splitlines()
    start = lines.index(title)
    rule = next(i for i in range(start, len(lines)) if set(lines[i]) == {"─"})
    end = next((i for i in range(rule, len(lines)) if not lines[i].strip()), len(lines))
    return lines[rule + 1:end]


def rows_by_name(rows: list[str], lead: int = 0) -> dict[str, list[str]]:
    """Table rows keyed by their name cell (the ``lead``-th token), continuation lines (indented,
    no numbers) joined onto the name; values are the row's other tokens."""
    joined: list[tuple[str, list[str]]] = []
    for line in rows:
        tokens = line.split()
        if line.startswith(" ") and joined and not any(NUMBER.match(t) for t in tokens):
            name, rest = joined[-1]
            joined[-1] = (name + tokens[0], rest)
            continue
        joined.append((tokens[lead], tokens[:lead] + tokens[lead + 1:]))
    names = [name for name, _ in joined]
    assert len(names) == len(set(names)), f"two rows look alike: {names}"
    return dict(joined)


@pytest.fixture()
def compare_folder(tmp_path, tmp_path_factory):
    target = tmp_path / "ws"
    shutil.copytree(shared_workspace(tmp_path_factory), target)
    return target


def test_compare_fits_80_columns_with_every_metric_whole(compare_folder, capsys):
    _, out = run(["compare", compare_folder, "--json"], capsys)
    document = json.loads(out)
    _, text = run(["compare", compare_folder], capsys)
    assert_fits(text)
    values = {(row["model"], row["metric"]): row for row in document["rows"]}
    for component in ("amplitude", "phase"):
        rows = rows_by_name(section(text, f"{component} vs ground truth"))
        assert set(rows) == {model["model_id"] for model in document["models"]}
        for model_id, shown in rows.items():
            for metric, cell in zip(("ssim", "ms_ssim", "psnr", "frc50"), shown, strict=True):
                value = values[(model_id, metric)][component]
                assert cell == ("–" if value in ("", None) else f"{float(value):.3g}"), (model_id, component, metric)
    for path in document["files"]:
        assert f"wrote {path}" in text.splitlines()


def test_stats_fits_80_columns_with_full_record_names(tiny_workspace, capsys):
    argv = ["stats", tiny_workspace, "--split", "test", "--n-groups", "4"]
    _, out = run(argv + ["--json"], capsys)
    document = json.loads(out)
    _, text = run(argv, capsys)
    assert_fits(text)
    for run_document in document["runs"]:
        title = next(line for line in text.splitlines()
                     if line.startswith(f"{run_document['model']} / {run_document['split']} "))
        rows = rows_by_name(section(text, title), lead=1)
        records = {**run_document["inputs"], **run_document["outputs"]}
        assert set(rows) == set(records)  # amplitude and phase outputs apart, each name whole
        for name, shown in rows.items():
            record = records[name]
            expected = [("out" if name in run_document["outputs"] else "in"),
                        f"{record['mean']:.4g}", f"{record['std']:.4g}", f"{record['min']:.4g}",
                        f"{record['max']:.4g}", f"{record['nonzero_fraction']:.4%}",
                        f"{record['nan_count']}/{record['inf_count']}"]
            assert shown == expected, name


def test_trace_is_a_tree_with_full_layer_names_at_80_columns(tmp_path, capsys):
    from ptytui.core.tfload import keras as load_keras

    keras = load_keras()
    data = write_npz(tmp_path / "test.npz", make_arrays(8, nx=4, ny=3, seed=2))
    inner_input = keras.Input((8, 8, 1))
    inner = keras.Model(inner_input, keras.layers.ReLU(name="encoder_block_activation")(
        keras.layers.Conv2D(2, 3, padding="same", name="encoder_block_convolution")(inner_input)),
        name="encoder_block")
    image = keras.Input((8, 8, 1), name="input")
    outputs = keras.layers.Conv2D(1, 1, name="encoder_head_convolution")(inner(image))
    model_path = tmp_path / "nested.keras"
    keras.Model(image, outputs).save(model_path)
    argv = ["trace", "--model", model_path, "--data", data, "--n-samples", "4"]
    _, out = run(argv + ["--json"], capsys)
    layers = json.loads(out)["layers"]
    _, text = run(argv, capsys)
    assert_fits(text)
    rows = section(text, text.splitlines()[0])
    starts = [line for line in rows if any(NUMBER.match(t) for t in line.split())]
    assert len(starts) == len(layers)
    for line, layer in zip(starts, layers):
        indent = len(line) - len(line.lstrip(" "))
        tokens = line.split()
        assert indent == 2 * layer["depth"] and tokens[0] == layer["name"], line
        output = layer["output"]
        assert f"{output['mean']:.4g}" in tokens and f"{output['std']:.4g}" in tokens, line
    assert {layer["depth"] for layer in layers} == {0, 1}


def test_card_prints_paths_whole_and_numbers_exact_at_80_columns(tiny_workspace, capsys):
    bundle = tiny_workspace / "models" / "baseline_gs1"
    _, out = run(["card", bundle, "--json"], capsys)
    document = json.loads(out)
    _, text = run(["card", bundle], capsys)
    assert_fits(text)
    lines = [line.split() for line in text.splitlines()]
    assert ["loaded", "from", document["loaded_from"]] in lines  # whole, on one line
    assert ["intensity", "scale", f"{document['intensity_scale']:.6g}"] in lines
    assert ["parameters", f"{document['parameters']:,}"] in lines
    for custom in document["custom_classes"]:  # module.Class: both parts shown whole
        module, class_name = custom.rsplit(".", 1)
        assert any(tokens[:2] == [class_name, module] for tokens in lines), custom


def test_export_prints_written_paths_whole_at_80_columns(compare_folder, tmp_path, capsys):
    out_dir = tmp_path / ("a_report_folder_whose_name_alone_is_long_enough_to_pass_eighty_columns" * 2)
    argv = ["export", compare_folder, "--format", "md,csv", "--out", out_dir, "--no-diagnosis", "--no-stats"]
    _, out = run(argv + ["--json"], capsys)
    files = json.loads(out)["files"]
    _, text = run(argv, capsys)
    assert_fits(text)
    for path in files:
        assert f"wrote {path}" in text.splitlines()


def test_compare_off_a_terminal_without_columns_is_80_wide(compare_folder, monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS")
    _, text = run(["compare", compare_folder], capsys)
    assert_fits(text)


def test_a_grid_too_wide_for_the_console_becomes_records_never_cropped():
    from rich.console import Console

    from ptytui.present.tables import Column, Grid, break_name, render_grid

    assert break_name("trimmed_obj.amplitude", 14) == ["trimmed_obj.", "  amplitude"]
    assert "".join(line.strip() for line in break_name("a" * 30, 10)) == "a" * 30
    grid = Grid("wide", [Column("name", "name"), Column("value"), Column("path", "text")])
    grid.add_row("diffraction_to_obj/trimmed_obj", "-6.985e-10", "/a/long/path/to/a/file.keras")
    console = Console(width=40, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    render_grid(console, grid)
    lines = console.export_text().splitlines()
    assert lines[:4] == ["wide", "diffraction_to_obj/trimmed_obj", "  value  -6.985e-10",
                         "  path   /a/long/path/to/a/file.keras"]
