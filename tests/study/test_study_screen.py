"""The Study screen: snapshots of the recorded demo study (6 cells and a broken one) at 80x24 and
120x40, replayed synchronously; a live feed updating the matrix; enter opens a cell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

RECORDED = Path(__file__).parent / "data" / "demo_study_records.json"
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}


def _result(with_records: bool = True):
    from ptytui.study.matrix import StudyResult

    data = json.loads(RECORDED.read_text())
    result = StudyResult(name=data["name"], path=data["path"], cells=data["cells"], label_names=data["label_names"])
    if with_records:
        for record in data["records"]:
            result.add(record)
    return result, data["records"]


@pytest.mark.parametrize("size", SIZES)
def test_study_screen(snap_compare, size):
    from ptytui.tui.screens.study import StudyApp

    result, _ = _result()
    app = StudyApp(result, theme="textual-dark")
    assert snap_compare(app, terminal_size=SIZES[size])


@pytest.mark.parametrize("size", SIZES)
def test_study_screen_half_done_on_the_broken_cell(snap_compare, size):
    """Three cells in, the rest pending; the cursor on the broken cell shows its one-line error."""
    from ptytui.tui.screens.study import StudyApp

    result, records = _result(with_records=False)
    for record in records[:3] + records[-1:]:
        result.add(record)
    app = StudyApp(result, theme="textual-dark", selected="runs/broken")
    assert snap_compare(app, terminal_size=SIZES[size])


def test_records_update_the_matrix_live_and_enter_opens_a_cell():
    from ptytui.tui.screens.study import StudyApp

    result, records = _result(with_records=False)

    async def drive():
        app = StudyApp(result, feed=iter(records))
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(50):
                await pilot.pause(0.02)
                if app.feed_done:
                    break
            assert app.feed_done and len(result.records) == len(records)
            assert "1 failed" in str(app.query_one("#title").render())
            await pilot.press("down", "enter")
        return app.return_value

    assert asyncio.run(drive()) == result.cells[1]["cell"]
