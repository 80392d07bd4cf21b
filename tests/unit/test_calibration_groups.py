"""Calibration maps and per-group figures: small generated data, values checked by hand."""

import numpy as np

from faceproc import calibration
from faceproc.groups import cell, format_groups, group_metrics, utkface_ethnicity


def test_isotonic_map_removes_a_known_bias_and_stays_monotone():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 90, 4000)
    pred = np.where(true > 40, true - 0.15 * (true - 40), true) + rng.normal(0, 2, len(true))  # old ages pulled down
    knots = calibration.isotonic_knots(pred, true)
    k = np.array(knots)
    assert np.all(np.diff(k[:, 0]) > 0) and np.all(np.diff(k[:, 1]) >= 0)
    fixed = calibration.apply_age(knots, pred)
    old = true > 60
    assert abs(np.mean(fixed[old] - true[old])) < 1.0 < abs(np.mean(pred[old] - true[old]))
    assert np.mean(np.abs(fixed - true)) < np.mean(np.abs(pred - true))


def test_age_map_is_identity_without_knots_and_extrapolates_by_offset():
    a = np.array([1.0, 50.0, 99.0], np.float32)
    assert np.array_equal(calibration.apply_age(None, a), a)
    knots = [[10.0, 12.0], [80.0, 85.0]]
    out = calibration.apply_age(knots, np.array([5.0, 45.0, 90.0]))
    assert np.allclose(out, [7.0, 48.5, 95.0])


def test_platt_recovers_a_temperature_and_lowers_ece():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-z))).astype(float)
    over = 1 / (1 + np.exp(-2.5 * z))  # overconfident by a factor of 2.5
    a, b = calibration.platt(over, y)
    assert abs(a - 0.4) < 0.03 and abs(b) < 0.05
    fixed = calibration.apply_gender([a, b], over)
    assert calibration.ece(fixed, y) < 0.02 < calibration.ece(over, y)
    # with b ~ 0 the decision moves only for probabilities next to 0.5
    assert abs(np.mean((fixed >= 0.5) == y) - np.mean((over >= 0.5) == y)) < 1e-3


def test_apply_without_calibration_is_identity():
    a, g = np.array([30.0], np.float32), np.array([0.7], np.float32)
    a2, g2 = calibration.apply(None, a, g)
    assert a2[0] == a[0] and g2[0] == g[0]


def test_utkface_ethnicity_from_names():
    assert utkface_ethnicity("/x/26_1_2_20170116.jpg.chip.jpg") == "Asian"
    assert utkface_ethnicity("utkface/61_1_20170109142408075.jpg.chip.jpg") is None  # no race field
    assert utkface_ethnicity("40_0_9_2017.jpg") is None


def test_cells_carry_counts_and_intervals():
    c = cell(np.array([1.0, 3.0, 5.0, 7.0]), np.array([True, True, False, True]))
    assert c["n"] == 4 and c["age_mae"] == 4.0 and c["gender_acc"] == 0.75
    lo, hi = c["age_mae_ci95"]
    assert lo < 4.0 < hi
    lo, hi = c["gender_acc_ci95"]
    assert 0.2 < lo < 0.75 < hi <= 1.0


def test_group_metrics_split_by_ethnicity_gender_and_age():
    age = np.array([5, 5, 30, 30, 70, 70], float)
    pred = age + np.array([1, 1, 2, 2, 10, 10])
    gender = np.array([0, 1, 0, 1, 0, 1], float)
    prob = np.array([0.9, 0.9, 0.1, 0.9, 0.1, 0.9])  # the first child is wrong
    eth = ["Asian", "Asian", "White", "White", "White", None]
    g = group_metrics(pred, prob, age, gender, eth)
    assert g["by_ethnicity"]["Asian"]["gender_acc"] == 0.5 and g["by_ethnicity"]["Asian"]["n"] == 2
    assert g["by_ethnicity"]["White"]["age_mae"] == round((2 + 2 + 10) / 3, 3)
    assert g["by_ethnicity"]["unknown"]["n"] == 1
    assert g["ethnicity_by_age"]["Asian"]["0-9"]["n"] == 2 and g["ethnicity_by_age"]["Asian"]["20-39"]["n"] == 0
    assert g["by_gender"]["male"]["gender_acc"] == round(2 / 3, 4)
    text = format_groups(g)
    assert "Asian" in text and "ethnicity x age band" in text
