"""Calibration maps and per-group figures: small generated data, values checked by hand."""

from dataclasses import replace

import numpy as np

from faceproc import calibration
from faceproc.groups import cell, format_groups, group_metrics, utkface_ethnicity


def test_monotone_map_removes_a_known_bias_and_stays_monotone():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 90, 4000)
    pred = np.where(true > 40, true - 0.15 * (true - 40), true) + rng.normal(0, 2, len(true))  # old ages pulled down
    knots = calibration.monotone_knots(pred, true)
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


def test_halves_evaluation_fits_on_selection_and_keeps_only_maps_that_help_on_report():
    from faceproc.card_eval import halves_evaluation

    rng = np.random.default_rng(3)
    n = 6000
    keys = np.array([f"utkface/{int(a)}_{g}_{e}_x{i}.jpg" for i, (a, g, e) in enumerate(
        zip(rng.uniform(1, 90, n), rng.integers(0, 2, n), rng.integers(0, 5, n)))])
    age = np.array([float(k.split("/")[1].split("_")[0]) for k in keys])
    gender = np.array([float(k.split("_")[1]) for k in keys])
    z = np.where(gender > 0, 1.5, -1.5) + rng.normal(0, 1.5, n)

    def predict_raw(crops):  # every age 3 years low, overconfident gender
        return age - 3.0 + rng.normal(0, 4, n), 1 / (1 + np.exp(-3 * z))

    res = halves_evaluation(predict_raw, keys, np.zeros((n, 1)), age, gender)
    h = res["evaluation_halves"]
    assert h["select"]["raw"]["n"] + h["report"]["raw"]["n"] == n
    assert res["calibration_decisions"]["age"]["kept"] and res["calibration"]["age_monotone"]
    assert h["report"]["calibrated"]["age_mae"] < h["report"]["raw"]["age_mae"]
    assert res["calibration_decisions"]["gender"]["kept"]
    assert res["groups"]["half"] == "report" and res["groups"]["n"] == h["report"]["raw"]["n"]
    assert res["evaluation_halves"]["report_shipped"]["age_mae"] == h["report"]["calibrated"]["age_mae"]


def test_a_map_that_does_not_help_is_left_out():
    from faceproc.card_eval import halves_evaluation

    rng = np.random.default_rng(4)
    n = 2000
    keys = np.array([f"utkface/{i % 80 + 1}_{i % 2}_0_x{i}.jpg" for i in range(n)])
    age = np.array([float(i % 80 + 1) for i in range(n)])
    gender = np.array([float(i % 2) for i in range(n)])
    prob = np.where(gender > 0, 0.9, 0.1)  # perfectly separated, already confident: Platt cannot lower ECE much

    res = halves_evaluation(lambda c: (age + rng.normal(0, 3, n), prob), keys, np.zeros((n, 1)), age, gender)
    assert not res["calibration_decisions"]["age"]["kept"]  # unbiased noise: isotonic overfits


def test_a_shipped_models_card_gains_its_calibration_in_place_and_the_predictor_applies_it(tmp_path):
    """ship onto the shipped file itself: weights, sha256 and version stay; the label gains +cal; the predictor
    (the one annotate runs) applies the card's maps after mirror averaging."""
    from faceproc.agegender.architecture import build_model
    from faceproc.agegender.files import publish, save_model
    from faceproc.agegender.runtime import AgeGenderPredictor
    from faceproc.agegender.spec import ModelSpec
    from faceproc.config import ModelConfig

    path = tmp_path / "unfrozen.keras"
    card = save_model(build_model("unfrozen", backbone_weights=None, compile=False), path,
                      {"variant": "unfrozen", "crop_policy": "arcface5-s1.3-up0.15-128"})
    before = path.read_bytes()
    cal = {"gender_platt": [0.5, 0.0], "age_monotone": [[0.0, 5.0], [100.0, 105.0]]}
    new = publish(path, "unfrozen", tmp_path, {"calibration": cal})
    assert path.read_bytes() == before and new["sha256"] == card["sha256"] and new["version"] == card["version"]
    spec = ModelSpec.resolve(ModelConfig(variant=str(path), runtime="keras", flip_tta=False))
    assert spec.calibration == cal and spec.label.startswith(f"unfrozen@{card['version']}+cal")
    crops = np.random.default_rng(0).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    raw_a, raw_p = AgeGenderPredictor(replace(spec, calibration=None)).predict(crops)
    a, p = AgeGenderPredictor(spec).predict(crops)
    assert np.allclose(p, calibration.apply_gender([0.5, 0.0], raw_p), atol=1e-5)
    assert np.allclose(a, np.clip(raw_a + 5.0, 0, 100), atol=1e-4)
