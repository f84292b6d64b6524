"""Tests of the measuring modules of ptytui.quality (stitching, alignment, image_metrics, evaluation,
metrics): scikit-image agreement, analytic cases, stitching, alignment, flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from ptytui.errors import InputError
from ptytui.quality.alignment import align_to_ground_truth
from ptytui.quality.evaluation import evaluate_patches, evaluate_reconstruction
from ptytui.quality.image_metrics import (
    MS_SSIM_WEIGHTS,
    frc,
    frc_crossing,
    half_bit_threshold,
    mae,
    ms_ssim,
    ms_ssim_scale_count,
    mse,
    psnr,
    ssim,
)
from ptytui.quality.metrics import CSV_COLUMNS, FRC_CSV_COLUMNS, empty_metrics, empty_rows
from ptytui.quality.stitching import largest_covered_rectangle, stitch_patches

# PtychoPINN's own files live in shared/ beside the checkout (or inside it, in a copy).
_HERE = Path(__file__).resolve()
_CANDIDATES = [_HERE.parents[2] / "shared", _HERE.parents[3] / "shared", Path("/work/shared")]
FIXTURES = next((c / "fixtures" / "ptychopinn" for c in _CANDIDATES
                 if (c / "fixtures" / "ptychopinn").is_dir()), _CANDIDATES[0] / "fixtures" / "ptychopinn")


def smooth_image(rng, shape, sigma=2.0):
    """A smooth random image in [0, 1]: structure at several scales, like a test object."""
    image = ndimage.gaussian_filter(rng.random(shape), sigma)
    image -= image.min()
    return image / image.max()


def complex_object(seed=0, shape=(128, 128)):
    rng = np.random.default_rng(seed)
    amplitude = 0.4 + 0.6 * smooth_image(rng, shape, 1.5)
    phase = 2.5 * (smooth_image(rng, shape, 2.5) - 0.5)
    return amplitude * np.exp(1j * phase)


def fourier_shift(image, shift):
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift))


# --- agreement with scikit-image ---------------------------------------------------------------

@pytest.mark.parametrize("shape, data_range", [((64, 64), 1.0), ((48, 37), 2.5), ((11, 11), 0.7)])
def test_ssim_equals_skimage_gaussian_population_covariance(shape, data_range):
    rng = np.random.default_rng(1)
    truth = smooth_image(rng, shape)
    pred = truth + 0.1 * rng.standard_normal(shape)
    expected = structural_similarity(pred, truth, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=data_range)
    assert ssim(pred, truth, data_range) == pytest.approx(expected, abs=1e-6)


def test_psnr_and_mse_equal_skimage_with_the_same_data_range():
    rng = np.random.default_rng(2)
    truth = smooth_image(rng, (40, 40))
    pred = truth + 0.05 * rng.standard_normal(truth.shape)
    data_range = float(np.ptp(truth))
    assert psnr(pred, truth, data_range) == pytest.approx(
        peak_signal_noise_ratio(truth, pred, data_range=data_range), rel=1e-12)
    assert mse(pred, truth) == pytest.approx(mean_squared_error(truth, pred), rel=1e-12)
    assert mae(pred, truth) == pytest.approx(np.mean(np.abs(pred - truth)), rel=1e-12)


def test_psnr_refuses_a_missing_or_zero_data_range():
    image = np.ones((16, 16))
    with pytest.raises(InputError, match="data_range > 0"):
        psnr(image, image * 0.5, 0.0)


def test_ssim_refuses_images_smaller_than_one_window():
    image = np.ones((10, 30))
    with pytest.raises(InputError, match="at least 11 x 11"):
        ssim(image, image, 1.0)


# --- analytic cases ----------------------------------------------------------------------------

def test_identical_images_give_frc_one_ssim_one_ms_ssim_one():
    image = smooth_image(np.random.default_rng(3), (96, 96), sigma=1.0)
    correlation = frc(image, image)
    assert np.allclose(correlation.curve, 1.0)
    assert not correlation.crossings["frc50"].crossed
    assert correlation.crossings["frc50"].ring == 48.0
    assert correlation.auc == pytest.approx(1.0)
    assert ssim(image, image, 1.0) == pytest.approx(1.0, abs=1e-12)
    value, scales = ms_ssim(image, image, 1.0)
    assert value == pytest.approx(1.0, abs=1e-12)
    assert scales == 4


def test_frc_of_independent_white_noise_is_near_zero_past_the_first_rings():
    rng = np.random.default_rng(4)
    first, second = rng.standard_normal((2, 128, 128))
    correlation = frc(first, second)
    rings = correlation.rings > 3
    # For independent noise FRC(k) has standard deviation 1/sqrt(n_k) (n_k ~ 2*pi*k pixels):
    # about 0.2 at ring 4, so a flat 0.2 bound would fail by chance; 5 sigma does not.
    assert np.all(np.abs(correlation.curve[rings]) < 5.0 / np.sqrt(correlation.n_per_ring[rings]))
    assert np.mean(np.abs(correlation.curve[rings])) < 0.1
    assert correlation.crossings["frc_halfbit"].ring <= 1.0


def test_frc_crops_the_largest_centred_square():
    rng = np.random.default_rng(5)
    image = rng.random((40, 64))
    correlation = frc(image, image)
    assert correlation.size == 40
    assert len(correlation.curve) == 21  # rings 0 .. Nyquist 20


def test_frc_crossing_is_interpolated_between_rings():
    crossing = frc_crossing([1.0, 0.8, 0.4, 0.2], 0.5)
    assert crossing.ring == pytest.approx(1.75)  # 0.3 above at ring 1, 0.1 below at ring 2
    assert crossing.fraction_of_nyquist == pytest.approx(1.75 / 3)
    assert crossing.crossed


def test_frc_crossing_reports_nyquist_when_never_crossed():
    crossing = frc_crossing([1.0, 0.9, 0.9, 0.9], 0.5)
    assert (crossing.ring, crossing.crossed) == (3.0, False)


def test_half_bit_threshold_follows_van_heel_schatz():
    assert half_bit_threshold(1) == pytest.approx(1.0, abs=1e-12)
    assert half_bit_threshold(100) == pytest.approx((0.2071 + 0.19102) / (1.2071 + 0.09102))
    assert half_bit_threshold(1e12) == pytest.approx(0.2071 / 1.2071, abs=1e-5)


# --- MS-SSIM ------------------------------------------------------------------------------------

@pytest.mark.parametrize("side, scales", [(11, 1), (21, 1), (22, 2), (43, 2), (44, 3), (88, 4),
                                          (175, 4), (176, 5), (512, 5), (10, 0)])
def test_ms_ssim_scale_rule(side, scales):
    assert ms_ssim_scale_count((side, side + 7)) == scales


def _gaussian_window():
    offsets = np.arange(-5, 6)
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5 ** 2))
    return window / window.sum()


def _hand_terms(first, second, data_range):
    """Mean luminance*cs and mean cs over the pixels whose 11 x 11 window fits, by explicit sums."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    window = _gaussian_window()
    cs_values, ssim_values = [], []
    for row in range(5, first.shape[0] - 5):
        for col in range(5, first.shape[1] - 5):
            patch_a = first[row - 5:row + 6, col - 5:col + 6]
            patch_b = second[row - 5:row + 6, col - 5:col + 6]
            mean_a, mean_b = np.sum(window * patch_a), np.sum(window * patch_b)
            var_a = np.sum(window * (patch_a - mean_a) ** 2)
            var_b = np.sum(window * (patch_b - mean_b) ** 2)
            cov = np.sum(window * (patch_a - mean_a) * (patch_b - mean_b))
            luminance = (2 * mean_a * mean_b + c1) / (mean_a ** 2 + mean_b ** 2 + c1)
            contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
            cs_values.append(contrast_structure)
            ssim_values.append(luminance * contrast_structure)
    return np.mean(cs_values), np.mean(ssim_values)


def test_ms_ssim_matches_a_hand_computation_on_two_scales():
    rng = np.random.default_rng(6)
    truth = smooth_image(rng, (24, 26), sigma=1.0)
    pred = 0.9 * truth + 0.05 + 0.05 * rng.standard_normal(truth.shape)
    data_range = 1.0
    cs_scale1, _ = _hand_terms(pred, truth, data_range)

    def halve(image):
        return image.reshape(image.shape[0] // 2, 2, image.shape[1] // 2, 2).mean(axis=(1, 3))

    _, ssim_scale2 = _hand_terms(halve(pred), halve(truth), data_range)  # 12 x 13: 2 scales
    w1, w2 = MS_SSIM_WEIGHTS[0], MS_SSIM_WEIGHTS[1]
    expected = cs_scale1 ** (w1 / (w1 + w2)) * ssim_scale2 ** (w2 / (w1 + w2))
    value, scales = ms_ssim(pred, truth, data_range)
    assert scales == 2
    assert value == pytest.approx(expected, rel=1e-10)


def test_ms_ssim_on_one_scale_is_ssim():
    rng = np.random.default_rng(7)
    truth = smooth_image(rng, (16, 20))
    pred = truth + 0.1 * rng.standard_normal(truth.shape)
    value, scales = ms_ssim(pred, truth, 1.0)
    assert scales == 1
    assert value == pytest.approx(ssim(pred, truth, 1.0), rel=1e-12)


# --- stitching ----------------------------------------------------------------------------------

def test_stitching_constant_patches_gives_a_constant_canvas_and_overlap_counts():
    grid = [(x, y) for y in (10.0, 11.0, 12.0) for x in (20.0, 21.0, 22.0)]
    patches = np.full((9, 6, 6), 0.3 + 0.4j)
    stitched = stitch_patches(patches, grid, crop=2)
    # Crops of 2 px at offsets -1, 0, +1: a 4 x 4 canvas; each axis is covered 1, 2, 2, 1 times.
    per_axis = np.array([1, 2, 2, 1])
    assert stitched.canvas.shape == (4, 4)
    assert np.array_equal(stitched.weights, np.outer(per_axis, per_axis))
    assert np.allclose(stitched.canvas, 0.3 + 0.4j)


def test_stitching_sub_pixel_positions_keeps_a_constant_canvas():
    rng = np.random.default_rng(8)
    positions = rng.uniform(30, 40, size=(25, 2))
    stitched = stitch_patches(np.full((25, 16, 16), 2.0), positions, crop=8)
    covered = stitched.weights > 0
    assert np.allclose(stitched.canvas[covered], 2.0)
    assert stitched.weights.sum() == pytest.approx(25 * 8 * 8)


@pytest.mark.parametrize("placement", ["bilinear", "nearest"])
def test_stitched_canvas_shows_the_object_at_its_origin(placement):
    obj = complex_object(9, (64, 64))
    n = 16
    positions = [(x, y) for y in range(20, 45, 4) for x in range(18, 47, 4)]
    patches = np.stack([obj[y - n // 2:y + n // 2, x - n // 2:x + n // 2] for x, y in positions])
    stitched = stitch_patches(patches, positions, crop=8, placement=placement)
    row0, col0 = (int(round(value)) for value in stitched.origin)
    height, width = stitched.canvas.shape
    assert stitched.covered_fraction == 1.0
    assert np.allclose(stitched.canvas, obj[row0:row0 + height, col0:col0 + width])


def test_largest_covered_rectangle_finds_the_biggest_hole_free_block():
    covered = np.ones((5, 7), bool)
    covered[0, :] = False
    covered[:, 6] = False
    covered[3, 2] = False
    row0, col0, height, width = largest_covered_rectangle(covered)
    assert height * width == 12
    assert covered[row0:row0 + height, col0:col0 + width].all()


def test_stitching_rejects_positions_that_do_not_match_the_patches():
    with pytest.raises(InputError, match=r"positions_xy \(4, 2\)"):
        stitch_patches(np.zeros((4, 8, 8)), np.zeros((3, 2)))


# --- alignment ----------------------------------------------------------------------------------

@pytest.mark.parametrize("phase_ramp", [0.0, 0.05])
def test_alignment_recovers_a_sub_pixel_shift(phase_ramp):
    truth = complex_object(10)
    cols = np.arange(128)[None, :]
    pred = fourier_shift(truth, (1.3, -0.7)) * np.exp(1j * (0.4 + phase_ramp * cols))
    aligned = align_to_ground_truth(pred, truth)
    # The offsets are the shift applied to the prediction to register it: minus the planted one.
    assert aligned.offset_dy == pytest.approx(-1.3, abs=0.05)
    assert aligned.offset_dx == pytest.approx(0.7, abs=0.05)


def test_phase_plane_removal_removes_a_planted_plane():
    truth = complex_object(11, (80, 96))
    rows, cols = np.mgrid[:80, :96]
    pred = truth * np.exp(1j * (0.7 + 0.03 * cols - 0.02 * rows))
    aligned = align_to_ground_truth(pred, truth)
    assert (aligned.offset_dy, aligned.offset_dx) == (0.0, 0.0)
    assert np.max(np.abs(np.angle(aligned.pred * np.conj(aligned.gt)))) < 1e-6
    assert aligned.phase_gradient == pytest.approx((-0.02, 0.03), abs=1e-8)


def test_alignment_crops_the_ground_truth_to_the_stitched_region():
    truth = complex_object(12, (96, 96))
    stitched_region = truth[30:70, 25:75]
    aligned = align_to_ground_truth(stitched_region, truth, origin=(30.0, 25.0), border=2)
    assert aligned.window == (32, 27, 36, 46)
    assert np.allclose(aligned.gt, truth[32:68, 27:73])


# --- evaluation of a model ------------------------------------------------------------------------

def test_evaluate_patches_of_the_truth_scores_perfectly():
    obj = complex_object(13, (96, 96))
    n = 24
    positions = np.array([(x, y) for y in range(28, 69, 5) for x in range(28, 69, 5)])
    patches = np.stack([obj[y - n // 2:y + n // 2, x - n // 2:x + n // 2] for x, y in positions])
    result = evaluate_patches("PtychoPINN", patches, positions, obj)
    assert result.flags == []
    assert result.amplitude.ssim == pytest.approx(1.0, abs=1e-9)
    assert result.phase.ssim == pytest.approx(1.0, abs=1e-9)
    assert result.amplitude.mae == pytest.approx(0.0, abs=1e-9)
    assert not result.amplitude.frc.crossings["frc50"].crossed
    assert result.covered_fraction == 1.0


@pytest.mark.filterwarnings("error")
def test_all_zero_prediction_is_flagged_without_dividing_by_zero():
    truth = complex_object(14, (64, 64))
    result = evaluate_reconstruction("Baseline", np.zeros((64, 64), complex), truth)
    raised = {flag["flag"] for flag in result.flags}
    assert {"all-zero-prediction", "scale-factor-nonfinite", "ssim-degenerate",
            "frc-lost-at-once", "registration-skipped"} <= raised
    assert result.amplitude_scale_factor == float("inf")
    assert result.amplitude_rescaled is False
    assert all(set(flag) == {"flag", "component", "value", "message"} for flag in result.flags)


def test_a_useful_prediction_is_rescaled_and_the_factor_recorded():
    truth = complex_object(15, (64, 64))
    result = evaluate_reconstruction("PtychoPINN", 0.5 * truth, truth)
    assert result.amplitude_scale_factor == pytest.approx(2.0)
    assert result.amplitude_rescaled is True
    assert result.amplitude.mae == pytest.approx(0.0, abs=1e-9)
    unscaled = evaluate_reconstruction("PtychoPINN", 0.5 * truth, truth, rescale_amplitude=False)
    assert unscaled.amplitude_rescaled is False
    assert unscaled.amplitude.mae > 0.1


def test_psnr_row_states_the_ground_truth_data_range():
    truth = complex_object(16, (64, 64))
    noisy = truth + 0.02 * np.random.default_rng(16).standard_normal(truth.shape)
    result = evaluate_reconstruction("PtychoPINN", noisy, truth, rescale_amplitude=False)
    rows = {row["metric"]: row for row in result.rows()}
    gt_window = np.abs(align_to_ground_truth(noisy, truth).gt)
    assert rows["psnr_data_range"]["amplitude"] == pytest.approx(np.ptp(gt_window))
    assert rows["psnr"]["amplitude"] == pytest.approx(
        10 * np.log10(np.ptp(gt_window) ** 2 / result.amplitude.mse))


def test_rows_follow_the_ptychopinn_csv_layout():
    truth = complex_object(17, (64, 64))
    result = evaluate_reconstruction("PtychoPINN", fourier_shift(truth, (0.5, 0.25)), truth,
                                     computation_time_s=12.5)
    rows = result.rows()
    assert all(tuple(row) == CSV_COLUMNS for row in rows)
    by_metric = {row["metric"]: row for row in rows}
    for name in ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50"):
        assert by_metric[name]["value"] == "" and by_metric[name]["amplitude"] != ""
    for name in ("registration_offset_dy", "registration_offset_dx", "computation_time_s"):
        assert by_metric[name]["amplitude"] == by_metric[name]["phase"] == ""
    assert by_metric["registration_offset_dy"]["value"] == pytest.approx(-0.5, abs=0.05)
    assert by_metric["computation_time_s"]["value"] == 12.5
    frc_rows = result.frc_rows()
    assert tuple(frc_rows[0]) == FRC_CSV_COLUMNS
    assert [row["frequency_bin"] for row in frc_rows] == list(range(len(frc_rows)))


def test_empty_rows_have_empty_cells_and_the_reason_is_kept():
    rows = empty_rows("Baseline", "model output all zero on the test split")
    full = evaluate_reconstruction("PtychoPINN", complex_object(18, (32, 32)), complex_object(18, (32, 32)))
    assert [row["metric"] for row in rows] == [row["metric"] for row in full.rows()]
    assert all(row["amplitude"] == row["phase"] == row["value"] == "" for row in rows)
    record = empty_metrics("Baseline", "model output all zero on the test split").to_dict()
    assert record["reason"] == "model output all zero on the test split"
    assert empty_metrics("Baseline", "skipped").frc_rows() == []


def test_to_dict_is_strict_json():
    truth = complex_object(19, (48, 48))
    result = evaluate_reconstruction("Baseline", np.zeros_like(truth), truth)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["amplitude_scale_factor"] == "inf"


def test_too_small_a_region_gets_nan_similarity_and_a_flag():
    truth = complex_object(20, (8, 8))
    result = evaluate_reconstruction("PtychoPINN", truth, truth)
    assert np.isnan(result.amplitude.ssim)
    assert "image-too-small" in {flag["flag"] for flag in result.flags}


def test_a_non_2d_reconstruction_is_an_input_error_in_one_line():
    with pytest.raises(InputError) as caught:
        evaluate_reconstruction("PtychoPINN", np.zeros((2, 8, 8)), np.zeros((8, 8)))
    assert "\n" not in caught.value.one_line()
    assert "metrics for PtychoPINN: expected reconstruction as a 2-D array" in str(caught.value)


def test_importing_and_evaluating_never_imports_tensorflow():
    script = ("import sys, numpy as np; from ptytui.quality import evaluation; "
              "o = np.exp(1j * np.random.default_rng(0).random((32, 32))); "
              "evaluation.evaluate_reconstruction('m', o, o); print('tensorflow' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


# --- PtychoPINN's own files ------------------------------------------------------------------

@pytest.mark.skipif(not (FIXTURES / "lines_N64_test.npz").is_file(), reason="PtychoPINN fixtures not present")
def test_stitching_ptychopinn_ground_truth_patches_reproduces_its_object():
    # Files written by PtychoPINN: if our position convention (x = column, patch centred at
    # pixel N//2) differed from theirs, registration would find an offset and SSIM would drop.
    with np.load(FIXTURES / "lines_N64_test.npz") as split:
        patches = split["ground_truth_patches"]
        positions = np.stack([split["xcoords"], split["ycoords"]], axis=1)
        obj = split["objectGuess"]
    result = evaluate_patches("PtychoPINN", patches, positions, obj)
    assert abs(result.offset_dy) < 0.25 and abs(result.offset_dx) < 0.25
    assert result.amplitude.ssim > 0.9 and result.phase.ssim > 0.9
    # 96 positions over a 185 x 94 px scan leave holes between the 20 px crops.
    assert [flag["flag"] for flag in result.flags] == ["partial-coverage"]
