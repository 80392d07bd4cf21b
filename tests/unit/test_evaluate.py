import numpy as np

from faceproc.evaluate import format_table, metrics_from_predictions


def test_metrics_and_table():
    age = np.array([5, 25, 45, 75], float)
    gender = np.array([0, 1, 0, 1], float)
    m = metrics_from_predictions(age + [1, -2, 3, -4], np.array([0.1, 0.9, 0.6, 0.2]), age, gender)
    assert m["age_mae"] == 2.5 and m["gender_acc"] == 0.5
    assert m["age_mse"] == (1 + 4 + 9 + 16) / 4
    assert m["by_age_band"]["70+"] == {"n": 1, "age_mae": 4.0, "gender_acc": 0.0}
    assert m["by_gender"]["male"]["n"] == 2
    table = format_table({"unfrozen": {"train": m, "val": m}, "frozen": {"val": m}})
    lines = table.splitlines()
    assert lines[0].split() == ["model", "train", "loss", "val", "loss", "age", "MAE", "gender", "acc"]
    assert lines[1].split()[:1] == ["unfrozen"] and "2.50" in lines[1] and "50.00%" in lines[1]
    assert lines[2].split()[1] == "-"
    assert "70+" in lines[4] and "4.00/  0.0%" in table
