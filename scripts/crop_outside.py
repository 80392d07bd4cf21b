"""How much of each training crop lies outside its UTKFace source image, per crop policy.

Reads the keypoints stored in a crop cache (faceproc/data/cache.py) and prints, for each template
scale, the median / 90th percentile share of the 128 px crop that the source does not cover (which
training fills with repeated edges, or with real content under `crop_fill: real`), and the eye distance
in crop pixels (how much of the 128 px the face gets).

    python scripts/crop_outside.py runs/cache/utkface.parquet --scales 0.9,1.2,1.3:0.15 --n 2000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow.parquet as pq

from faceproc.crop import CropPolicy, outside_fraction


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cache")
    ap.add_argument("--scales", default="0.9,1.0,1.1,1.2,1.3", help="template scales, or scale:up pairs (1.3:0.15)")
    ap.add_argument("--n", type=int, default=2000, help="rows sampled (seeded)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    df = pq.read_table(a.cache, columns=["status", "kps", "width", "height"]).to_pandas()
    df = df[df.status == "ok"].reset_index(drop=True)
    idx = np.random.default_rng(0).choice(len(df), min(a.n, len(df)), replace=False)
    res = {}
    print(f"{'policy':<20} {'median out':>10} {'p90 out':>8} {'>10% out':>9} {'eye dist px':>11}")
    for spec in a.scales.split(","):
        s, _, up = spec.partition(":")
        pol = CropPolicy(float(s), up=float(up or 0))
        fr = np.array([outside_fraction(np.asarray(df.kps[i]), int(df.width[i]), int(df.height[i]), pol) for i in idx])
        t = pol.template()
        res[pol.name] = {"median": float(np.median(fr)), "p90": float(np.quantile(fr, 0.9)),
                         "over_10pct": float((fr > 0.1).mean()), "eye_distance_px": float(np.linalg.norm(t[1] - t[0]))}
        r = res[pol.name]
        print(f"{pol.name:<20} {100 * r['median']:9.1f}% {100 * r['p90']:7.1f}% {100 * r['over_10pct']:8.1f}% "
              f"{r['eye_distance_px']:11.1f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"cache": a.cache, "n": len(idx), "policies": res}, fh, indent=1)


if __name__ == "__main__":
    main()
