"""The ePIE reference sits where its metadata says: the comparison registers it in place and
evaluates it on the same object region as the models (not on its unlit canvas border)."""

from __future__ import annotations

import numpy as np

from ptytui.inputs.npz import open_split
from ptytui.quality.compare import compare_workspace, load_reference, scanned_region
from ptytui.running.session import Session


def test_reference_correlates_with_the_truth_where_its_origin_puts_it(tiny_workspace):
    recon = load_reference(tiny_workspace / "reference" / "epie_test.npz")
    test = open_split(tiny_workspace / "data" / "test.npz", "test")
    canvas, (row, col) = scanned_region(recon.object, recon.origin, test.positions, test.N)
    truth = np.abs(np.asarray(test.object))
    r, c = int(row), int(col)

    def correlation(dy: int, dx: int) -> float:
        h, w = canvas.shape[0] - 8, canvas.shape[1] - 8
        a = np.abs(canvas[4:4 + h, 4:4 + w])
        b = truth[r + 4 + dy:r + 4 + dy + h, c + 4 + dx:c + 4 + dx + w]
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    in_place = correlation(0, 0)
    assert in_place > 0.8
    assert all(correlation(dy, dx) <= in_place for dy in (-3, 0, 3) for dx in (-3, 0, 3))


def test_comparison_registers_the_reference_in_place(tiny_workspace_copy):
    comparison = compare_workspace(Session.open(tiny_workspace_copy))
    epie = comparison.entry("ePIE")
    assert epie.status == "evaluated"
    assert not [f for f in epie.flags if f.get("flag") == "registration-skipped"], epie.flags
    pinn = comparison.entry("PtychoPINN")
    # The reference is evaluated on the region the models' stitched canvases cover.
    assert abs(epie.origin[0] - pinn.origin[0]) <= 12 and abs(epie.origin[1] - pinn.origin[1]) <= 12
