"""Summary report rebuilt from the Parquet output alone (report.json + a self-contained report.html)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .schema import READ_OK, read_table, write_text_atomic

MAX_ERRORS_JSON = 1000
MAX_ERRORS_HTML = 200


def summarize(out: str | Path) -> dict[str, Any]:
    out = Path(out)
    faces = read_table(out, "faces").to_pandas()
    images = read_table(out, "images").to_pandas()
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    counts = {k: v for k, v in images["status"].value_counts().to_dict().items() if v} if len(images) else {}
    bad = images[~images["status"].isin(list(READ_OK))] if len(images) else images
    hist = manifest.get("history") or []
    last = hist[-1] if hist else {}
    seconds = last.get("seconds")
    per_image = images["n_faces"].fillna(0).astype(int) if len(images) else images.get("n_faces")

    def stats(x) -> dict:
        x = np.asarray(x, np.float64)
        if not len(x):
            return {"n": 0}
        return {"n": int(len(x)), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
                "p50": float(np.median(x)), "max": float(x.max())}

    return {
        "output": str(out),
        "run_id": manifest.get("run_id"),
        "model": manifest.get("model"),
        "state": manifest.get("state"),
        "files": int(len(images)),
        "faces": int(len(faces)),
        "status_counts": {str(k): int(v) for k, v in counts.items()},
        "failed_files": int(len(bad)),
        "ignored_non_image_files": manifest.get("n_ignored_files"),
        "faces_per_image": {str(k): int(v) for k, v in per_image.value_counts().sort_index().items()} if len(images) else {},
        "age": {g: stats(faces.loc[faces["gender"] == g, "age"]) for g in ("female", "male")} | {"all": stats(faces["age"])},
        "gender_counts": {str(k): int(v) for k, v in faces["gender"].value_counts().items() if v} if len(faces) else {},
        "det_score": stats(faces["det_score"]),
        "throughput": {
            "last_run_seconds": seconds,
            "last_run_files": last.get("files_run"),
            "files_per_s": (last.get("files_run") or 0) / seconds if seconds else None,
            # the whole output, across every resumed run (a last run that found everything done did nothing)
            "all_runs": len(hist),
            "all_runs_seconds": round(sum(h.get("seconds") or 0 for h in hist), 2),
            "all_runs_files": sum(h.get("files_run") or 0 for h in hist),
            "all_runs_files_per_s": (sum(h.get("files_run") or 0 for h in hist) / sum(h.get("seconds") or 0 for h in hist)
                                     if sum(h.get("seconds") or 0 for h in hist) else None),
            "image_ms_mean": float(images["elapsed_ms"].mean()) if len(images) else None,
            "shards": len(manifest.get("shards", {})),
        },
        "errors": [
            {"path": r.image_path, "status": r.status, "error": r.error}
            for r in bad.head(MAX_ERRORS_JSON).itertuples()
        ],
        "_frames": (faces, images),
    }


def _plots(faces, images) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode()

    out = {}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.arange(0, 105, 5)
    for g, c in (("female", "tab:red"), ("male", "tab:blue")):
        ax.hist(faces.loc[faces["gender"] == g, "age"], bins=bins, alpha=0.6, label=g, color=c)
    ax.set(xlabel="estimated age (years)", ylabel="faces", title="Age by gender")
    ax.legend()
    out["age"] = png(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    n = images.loc[images["status"].isin(list(READ_OK)), "n_faces"].astype(int)
    ax.hist(n, bins=np.arange(0, max(int(n.max()) if len(n) else 1, 1) + 2) - 0.5, color="tab:green")
    ax.set(xlabel="faces per image", ylabel="images", title="Faces per readable image")
    out["faces_per_image"] = png(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(faces["det_score"], bins=np.linspace(0, 1, 41), color="tab:purple")
    ax.set(xlabel="detection score", ylabel="faces", title="Detection scores")
    out["det_score"] = png(fig)
    return out


def _html(rep: dict, plots: dict[str, str]) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in sorted(rep["status_counts"].items()))
    errs = "".join(
        f"<tr><td>{e(str(x['path']))}</td><td>{e(str(x['status']))}</td><td>{e(str(x['error']))}</td></tr>"
        for x in rep["errors"][:MAX_ERRORS_HTML]
    )
    more = f"<p>{rep['failed_files'] - MAX_ERRORS_HTML} more in report.json / the images table.</p>" if rep["failed_files"] > MAX_ERRORS_HTML else ""
    tp = rep["throughput"]
    fps = f"{tp['all_runs_files_per_s']:.2f}" if tp.get("all_runs_files_per_s") else "n/a"
    imgs = "".join(f'<figure><img src="data:image/png;base64,{v}" alt="{k}"></figure>' for k, v in plots.items())
    age = rep["age"]
    age_rows = "".join(
        f"<tr><td>{g}</td><td>{a['n']}</td><td>{a.get('mean', float('nan')):.1f}</td><td>{a.get('p50', float('nan')):.1f}</td></tr>"
        for g, a in age.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>faceproc report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}figure{{display:inline-block;margin:0 1em 1em 0}}</style></head><body>
<h1>faceproc report</h1>
<p>Output <code>{e(rep['output'])}</code> &middot; run {e(str(rep['run_id']))} &middot; model <code>{e(str(rep['model']))}</code> &middot; state {e(str(rep['state']))}</p>
<h2>Totals</h2><table><tr><th>files</th><th>faces</th><th>failed files</th><th>shards</th><th>work, all runs</th><th>files/s</th></tr>
<tr><td>{rep['files']}</td><td>{rep['faces']}</td><td>{rep['failed_files']}</td><td>{tp['shards']}</td><td>{tp['all_runs_seconds']} s for {tp['all_runs_files']} files in {tp['all_runs']} run(s)</td><td>{fps}</td></tr></table>
<h2>Files per status</h2><table><tr><th>status</th><th>files</th></tr>{rows}</table>
<h2>Estimated age</h2><table><tr><th>gender</th><th>faces</th><th>mean age</th><th>median age</th></tr>{age_rows}</table>
<h2>Distributions</h2>{imgs}
<h2>Files that could not be processed</h2><table><tr><th>path</th><th>status</th><th>error</th></tr>{errs}</table>{more}
</body></html>"""


def build_report(out: str | Path) -> dict[str, Any]:
    out = Path(out)
    rep = summarize(out)
    faces, images = rep.pop("_frames")
    write_text_atomic(json.dumps(rep, indent=1, default=str), out / "report.json")
    write_text_atomic(_html(rep, _plots(faces, images)), out / "report.html")
    return rep
