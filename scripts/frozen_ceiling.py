"""Upper bound for the frozen variant: closed-form ridge read-outs of the same frozen ImageNet features.

The frozen model is a linear read-out (Dropout + Dense) of GAP features; if the best regularised
linear fit on those features misses a target, no training of the specified head reaches it.

    python scripts/frozen_ceiling.py --config configs/train_frozen.yaml --cache runs/cache/utkface.parquet -o runs/frozen_final

Uses (or computes) the same cached features as `faceproc train` (train, mirrored train, val).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from faceproc.config import resolve_backbone_weights
from faceproc.train import TrainConfig, _cached_features, prepare_data  # noqa: E402


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Weights (with bias as the last entry) of min |Xw - y|^2 + lam |w|^2 (bias unpenalised)."""
    xb = np.hstack([x, np.ones((len(x), 1), x.dtype)]).astype(np.float64)
    reg = lam * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y.astype(np.float64))


def apply(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ w[:-1] + w[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/train_frozen.yaml")
    ap.add_argument("--cache", default="runs/cache/utkface.parquet")
    ap.add_argument("-o", "--output", default="runs/frozen_final", help="a run folder (only its parent matters for defaults)")
    ap.add_argument("--lambdas", default="1,10,100,1000")
    args = ap.parse_args()
    cfg = TrainConfig.load(args.config, cache=args.cache)
    data = prepare_data(cfg, Path(args.output))
    backbone = resolve_backbone_weights(cfg.backbone_weights)
    cache_dir = Path(data["cache"]).parent
    tr, va = data["train"], data["val"]
    ftr = np.concatenate([_cached_features(cache_dir, "train", backbone, tr["crops"], False),
                          _cached_features(cache_dir, "train-flip", backbone, tr["crops"], True)])
    fva = _cached_features(cache_dir, "val", backbone, va["crops"], False)
    age_tr, g_tr = np.concatenate([tr["age"]] * 2), np.concatenate([tr["gender"]] * 2)
    rows = []
    for lam in [float(v) for v in args.lambdas.split(",")]:
        mae = float(np.abs(apply(ridge(ftr, age_tr, lam), fva) - va["age"]).mean())
        # Least-squares classifier on +-1 targets: the linear-probe counterpart of the sigmoid head.
        acc = float(((apply(ridge(ftr, 2 * g_tr - 1, lam), fva) > 0) == (va["gender"] > 0.5)).mean())
        rows.append({"lambda": lam, "age_mae": mae, "gender_acc": acc})
        print(f"lambda {lam:>8g}: age MAE {mae:.2f}  gender acc {acc:.2%}")
    best = {"age_mae": min(r["age_mae"] for r in rows), "gender_acc": max(r["gender_acc"] for r in rows)}
    print(f"best of {len(rows)}: age MAE {best['age_mae']:.2f}, gender acc {best['gender_acc']:.2%} (n_val={len(va['age'])})")
    print(json.dumps({"rows": rows, "best": best}))


if __name__ == "__main__":
    main()
