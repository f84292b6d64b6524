"""Screenshots of the workbench: every screen (and the help) of a headless app as SVG files,
for `ptytui --screenshots DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ptytui.tui.screens.base import SCREENS

if TYPE_CHECKING:
    from ptytui.tui.app import WorkbenchApp


async def save_screens(app: WorkbenchApp, out_dir: str | Path, *, size: tuple[int, int] = (120, 40),
                       prefix: str = "") -> list[Path]:
    """Render every screen (and the help) of a running headless app to SVG files in ``out_dir``.

    Waits for the engine feed to finish first. ``size`` is (columns, rows); the files are named
    ``<prefix><mode>.svg`` and ``<prefix>help.svg``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        while app.feed is not None and app.state.feed_status in ("idle", "loading", "running"):
            await pilot.pause(0.1)  # the engine (or the replay) is still producing results
        await pilot.pause()
        for _, mode, _ in SCREENS:
            app.switch_mode(mode)
            await pilot.pause()
            await pilot.pause()
            written.append(Path(app.save_screenshot(f"{prefix}{mode}.svg", str(out))))
        app.switch_mode("overview")
        await pilot.press("question_mark")
        await pilot.pause()
        written.append(Path(app.save_screenshot(f"{prefix}help.svg", str(out))))
    return written
