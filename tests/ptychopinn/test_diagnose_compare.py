"""diagnose and compare on PtychoPINN's bundle (test split), default batch size."""

from __future__ import annotations

import json

import pytest

from tests.ptychopinn.conftest import session_sharing


@pytest.fixture(scope="module")
def workspace(ptycho_on_path, bundle, splits):
    from ptytui.inputs.workspace import workspace_from_flags

    return lambda positions: workspace_from_flags([str(bundle)], [f"test={splits['test']}"], positions=positions)


def test_diagnose_absolute_names_the_merge_and_the_batch_dependent_visibility(workspace, loaded):
    from ptytui.core.jsonable import json_ready
    from ptytui.diagnosis.diagnose import diagnose_workspace

    diagnosis = diagnose_workspace(workspace("absolute"), trust=True,
                                   session=session_sharing(workspace("absolute"), loaded))
    document = json.loads(json.dumps(json_ready(diagnosis.to_dict()), allow_nan=False))
    found = {f["id"]: f for f in document["findings"]}
    merge = found["output-count-mismatch"]["evidence"]
    assert (merge["inputs"], merge["outputs"], merge["merge_starts_at"]) == (64, 1, 64)
    coupling = found["batch-coupling"]
    measure = coupling["evidence"]["measures"][0]
    assert measure["positions"] == "absolute" and measure["batch_size"] == 63
    assert measure["entirely_zero_samples_single"] == 0 and measure["entirely_zero_samples_batched"] > 0
    assert measure["prediction_holds"] is True
    # streamed at batch 1 (the only size matching batch 1): every patch centred, nothing off canvas
    assert diagnosis.runs[0].batch_size == 1
    assert "positions-off-canvas" not in found


def test_compare_reports_the_merge_in_the_models_terms_and_is_not_cached(workspace, loaded, tmp_path):
    from ptytui.quality.compare import compare_workspace
    from ptytui.quality.comparison_store import load_cached_comparison, save_comparison

    session = session_sharing(workspace("relative"), loaded, batch_size=64)
    comparison = compare_workspace(session, split="test", decision=None)
    entry = comparison.entries[0]
    assert entry.status == "failed" and "returned 1 output for 64 inputs" in entry.note
    assert save_comparison(comparison, tmp_path) == []
    assert load_cached_comparison(tmp_path, workspace_hash=comparison.workspace_hash, decision=None) is None


def test_diagnose_at_batch_16_names_the_all_zero_samples(workspace, loaded):
    """Issue 14's check on the real bundle: streamed at batch 16 with absolute offsets, the live
    layer health finds the test samples that come back entirely zero and the diagnosis names them
    by count and index where they die: 23 in the batch reassembly's padded canvas, 28 (5 more)
    after trimming, the model's output."""
    from ptytui.diagnosis.diagnose import diagnose_workspace

    diagnosis = diagnose_workspace(workspace("absolute"), trust=True,
                                   session=session_sharing(workspace("absolute"), loaded, batch_size=16))
    assert diagnosis.runs[0].batch_size == 16
    collapse = {f.layer: f for f in diagnosis.findings if f.id == "sample-collapse"}
    assert list(collapse) == ["padded_obj_2", "trimmed_obj"], [f.id for f in diagnosis.findings]
    assert collapse["padded_obj_2"].summary.startswith(
        "bundle_gs1 on test: 23 of 96 samples are all zero after padded_obj_2 (indices 1, 5, 9, 16, ")
    output = collapse["trimmed_obj"]
    assert output.summary.startswith(
        "bundle_gs1 on test: 28 of 96 samples are all zero after trimmed_obj (indices 1, 5, 9, 11, ")
    assert output.summary.endswith("; 5 of them first here")
    assert output.evidence["samples"] == 28 and output.evidence["exact"] is True
