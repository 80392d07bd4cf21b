"""Summary report rebuilt from the Parquet output alone (report.json + a self-contained report.html, whose page
is drawn by report_page.py)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .gallery import GALLERY_PER_GROUP, gallery as _gallery  # noqa: F401 (GALLERY_PER_GROUP re-exported)
from .plots import plots as _plots
from .quality import UNCERTAIN
from .report_page import MAX_ERRORS_HTML, page  # noqa: F401 (MAX_ERRORS_HTML re-exported)
from .schema import OK, READ_OK, shown_path
from .storage import Store, read_table

MAX_ERRORS_JSON = 1000
MAX_NO_FACE_LIST = 50
MAX_FOLDERS = 500  # folders listed (most files first); report.json and the images table hold the rest


def _dirname(p: str) -> str:
    return p.rsplit("/", 1)[0] if "://" in p else os.path.dirname(p)


def _rel_folders(images) -> "object":
    """The folder a person knows each row by: its folder below the input (prefixed by the input's name when
    there are several inputs); the absolute folder for rows written before these columns existed."""
    absolute = images["image_path"].map(_dirname)
    if "folder" not in images or images["folder"].isna().all():
        return absolute
    roots = images["input_root"].fillna("")
    several = roots.nunique() > 1
    base = roots.map(lambda r: os.path.basename(r.rstrip("/")) or r) if several else ""
    rel = (base + "/" + images["folder"].fillna("")).str.strip("/") if several else images["folder"].fillna("")
    return rel.where(images["folder"].notna(), absolute).replace("", "(top folder)")


def _folders(faces, images, preview_of: dict[str, str]) -> list[dict]:
    if not len(images):
        return []
    img = images.assign(folder_abs=images["image_path"].map(_dirname), rel=_rel_folders(images))
    g = img.groupby("folder_abs", sort=False)
    table = g.agg(files=("image_path", "size"), faces=("n_faces", lambda x: int(x.fillna(0).sum())), rel=("rel", "first"))
    table["failed"] = g["status"].agg(lambda x: int((~x.isin(list(READ_OK))).sum()))
    table["no_faces"] = g["status"].agg(lambda x: int((x == "no_faces").sum()))
    if len(faces):
        fa = faces.assign(folder=faces["image_path"].map(_dirname)).groupby("folder")["age"].mean()
        table["mean_age"] = fa
    else:
        table["mean_age"] = np.nan
    table = table.sort_values("files", ascending=False).head(MAX_FOLDERS)
    previews: dict[str, list[str]] = {}
    for path, name in preview_of.items():
        previews.setdefault(_dirname(path), []).append(name)
    return [{"folder": k, "rel": r.rel, "files": int(r.files), "faces": int(r.faces), "failed": int(r.failed),
             "no_faces": int(r.no_faces), "previews": sorted(previews.get(k, [])),
             "mean_age": None if np.isnan(r.mean_age) else round(float(r.mean_age), 1)}
            for k, r in table.iterrows()]


def _previews(images, names: list[str]) -> dict[str, str]:
    """image_path -> its preview's file name, for the previews that exist (OUT/previews)."""
    from .preview import preview_name

    have = set(names)
    if not have or not len(images):
        return {}
    ok = images.loc[images["status"] == OK, "image_path"]
    return {p: n for p in ok for n in [preview_name(p)] if n in have}


def summarize(out, previews: list[str] | None = None) -> dict[str, Any]:
    out = out if isinstance(out, Store) else Store(out)
    faces = read_table(out, "faces").to_pandas()
    images = read_table(out, "images").to_pandas()
    manifest = out.read_json("manifest.json", {}) or {}
    counts = {k: v for k, v in images["status"].value_counts().to_dict().items() if v} if len(images) else {}
    bad = images[~images["status"].isin(list(READ_OK))] if len(images) else images
    readable = images[images["status"].isin(list(READ_OK))] if len(images) else images
    hist = manifest.get("history") or []
    last = hist[-1] if hist else {}
    seconds = last.get("seconds")
    preview_of = _previews(images, previews or [])
    rel = (dict(zip(images["image_path"], images["rel_path"].fillna(images["image_path"])))
           if "rel_path" in images and len(images) else {})
    no_face = images.loc[images["status"] == "no_faces", "image_path"].head(MAX_NO_FACE_LIST).tolist() if len(images) else []
    withheld = faces["withheld"].value_counts() if "withheld" in faces and len(faces) else {}
    prob = faces["female_prob"].dropna()

    def stats(x) -> dict:
        x = np.asarray(x, np.float64)
        x = x[~np.isnan(x)]  # withheld faces have no age
        if not len(x):
            return {"n": 0}
        return {"n": int(len(x)), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
                "p50": float(np.median(x)), "max": float(x.max())}

    return {
        "output": str(out),
        "inputs": [shown_path(p) for p in manifest.get("inputs") or []],  # \xNN: not UTF-8
        "finished": manifest.get("finished"),
        "run_id": manifest.get("run_id"),
        "model": manifest.get("model"),
        "config": {k: (manifest.get("config") or {}).get(k) for k in ("model", "detector")},
        "state": manifest.get("state"),
        "files": int(len(images)),
        "faces": int(len(faces)),
        "status_counts": {str(k): int(v) for k, v in counts.items()},
        "failed_files": int(len(bad)),
        "ignored_non_image_files": manifest.get("n_ignored_files"),
        "skipped": manifest.get("skipped") or {},  # not rows: videos, other files, unreadable folders, links
        # over the files that were read (a file that failed has no face count, not 0 faces)
        "faces_per_image": ({str(k): int(v) for k, v in readable["n_faces"].fillna(0).astype(int).value_counts().sort_index().items()}
                            if len(readable) else {}),
        "age": {g: stats(faces.loc[faces["gender"] == g, "age"]) for g in ("female", "male")} | {"all": stats(faces["age"])},
        "gender_counts": {str(k): int(v) for k, v in faces["gender"].value_counts().items() if v} if len(faces) else {},
        "gender_uncertain": int(((prob >= UNCERTAIN[0]) & (prob <= UNCERTAIN[1])).sum()),
        "withheld": {str(k): int(v) for k, v in dict(withheld).items() if v},
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
        "folders": _folders(faces, images, preview_of),
        "previews": [{"name": n, "path": p, "rel": rel.get(p, p), "folder": _dirname(p)}
                     for p, n in sorted(preview_of.items(), key=lambda t: rel.get(t[0], t[0]))],
        "no_face_photos": {"count": int((images["status"] == "no_faces").sum()) if len(images) else 0,
                           "sample": no_face, "sample_rel": [rel.get(p, p) for p in no_face]},
        "errors": [
            {"path": r.image_path, "rel": rel.get(r.image_path, r.image_path), "status": r.status, "error": r.error}
            for r in bad.head(MAX_ERRORS_JSON).itertuples()
        ],
        "_frames": (faces, images),
    }


def build_report(out, faces_in_report: bool = True) -> dict[str, Any]:
    """report.json and report.html of an output folder (local or object store), rebuilt from its Parquet;
    `faces_in_report` False: no face in report.html (no gallery, no previews shown; docs/privacy.md)."""
    out = out if isinstance(out, Store) else Store(out)
    previews = out.list("previews", ".jpg") if faces_in_report else []
    rep = summarize(out, previews)
    faces, images = rep.pop("_frames")
    rep["faces_in_report"] = bool(faces_in_report)
    gallery = _gallery(faces, images, previews) if faces_in_report else []
    rep["gallery_faces"] = len(gallery)
    out.write_text("report.json", json.dumps(rep, indent=1, default=str))
    out.write_text("report.html", page(rep, _plots(faces, images), gallery))
    return rep
