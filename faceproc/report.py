"""Summary report rebuilt from the Parquet output alone (report.json + a self-contained report.html)."""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np

from .gallery import GALLERY_PER_GROUP, gallery as _gallery
from .schema import READ_OK
from .storage import Store, read_table

MAX_ERRORS_JSON = 1000
MAX_ERRORS_HTML = 200
MAX_NO_FACE_LIST = 50
MAX_FOLDERS = 500  # folders listed (most files first); report.json and the images table hold the rest
_LEFT_OUT = "<p>Left out: this report shows no faces (--no-faces-in-report; docs/privacy.md).</p>"


def _folders(faces, images) -> list[dict]:
    import os

    if not len(images):
        return []
    img = images.assign(folder=images["image_path"].map(os.path.dirname))
    g = img.groupby("folder", sort=False)
    table = g.agg(files=("image_path", "size"), faces=("n_faces", lambda x: int(x.fillna(0).sum())))
    table["failed"] = g["status"].agg(lambda x: int((~x.isin(list(READ_OK))).sum()))
    table["no_faces"] = g["status"].agg(lambda x: int((x == "no_faces").sum()))
    if len(faces):
        fa = faces.assign(folder=faces["image_path"].map(os.path.dirname)).groupby("folder")["age"].mean()
        table["mean_age"] = fa
    else:
        table["mean_age"] = np.nan
    table = table.sort_values("files", ascending=False).head(MAX_FOLDERS)
    return [{"folder": k, "files": int(r.files), "faces": int(r.faces), "failed": int(r.failed),
             "no_faces": int(r.no_faces), "mean_age": None if np.isnan(r.mean_age) else round(float(r.mean_age), 1)}
            for k, r in table.iterrows()]


def summarize(out) -> dict[str, Any]:
    out = out if isinstance(out, Store) else Store(out)
    faces = read_table(out, "faces").to_pandas()
    images = read_table(out, "images").to_pandas()
    manifest = out.read_json("manifest.json", {}) or {}
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
        "skipped": manifest.get("skipped") or {},  # not rows: videos, other files, unreadable folders, links
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
        "folders": _folders(faces, images),
        "no_face_photos": {"count": int((images["status"] == "no_faces").sum()) if len(images) else 0,
                           "sample": images.loc[images["status"] == "no_faces", "image_path"].head(MAX_NO_FACE_LIST).tolist()
                           if len(images) else []},
        "errors": [
            {"path": r.image_path, "status": r.status, "error": r.error}
            for r in bad.head(MAX_ERRORS_JSON).itertuples()
        ],
        "_frames": (faces, images),
    }


def _svg_hist(series: list[tuple[np.ndarray, str, str]], bins: np.ndarray, title: str, xlabel: str, ylabel: str,
              integer_bins: bool = False) -> str:
    """A histogram as inline SVG, bars of several series side by side: drawing it here instead of with
    matplotlib saves ~0.5 s at the end of every run (its import and rendering) and a dependency."""
    e = html.escape
    W, H, L, B, T, R = 560, 270, 52, 42, 26, 12
    pw, ph, nb = W - L - R, H - T - B, len(bins) - 1
    counts = [np.histogram(v, bins=bins)[0] for v, _, _ in series]
    top = max([1] + [int(c.max()) for c in counts if len(c)])
    bw = pw / nb / len(series)
    out = [f'<svg width="{W}" height="{H}" font-family="sans-serif" font-size="11" '
           f'role="img" aria-label="{e(title)}"><text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{e(title)}</text>']
    for s, ((_, color, label), c) in enumerate(zip(series, counts)):
        for i, n in enumerate(c):
            if n:
                h = ph * n / top
                out.append(f'<rect x="{L + pw * i / nb + s * bw:.1f}" y="{T + ph - h:.1f}" width="{max(bw - 0.6, 0.6):.1f}" '
                           f'height="{h:.1f}" fill="{color}"><title>{e(label)}: {n}</title></rect>')
    out.append(f'<path d="M{L} {T}V{T + ph}H{L + pw}" fill="none" stroke="#333"/>')
    step = max(1, nb // 8)
    for i in range(0, nb + (0 if integer_bins else 1), step):  # integer bins: label the centres
        x = L + pw * (i + 0.5 * integer_bins) / nb
        v = (bins[i] + bins[i + 1]) / 2 if integer_bins else bins[i]
        out.append(f'<text x="{x:.1f}" y="{T + ph + 14}" text-anchor="middle">{v:g}</text>')
    for v in sorted({0, top // 2, top}):
        out.append(f'<text x="{L - 5}" y="{T + ph - ph * v / top + 4:.1f}" text-anchor="end">{v}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 6}" text-anchor="middle">{e(xlabel)}</text>'
               f'<text transform="translate(13 {T + ph / 2}) rotate(-90)" text-anchor="middle">{e(ylabel)}</text>')
    if len(series) > 1:
        for s, (_, color, label) in enumerate(series):
            out.append(f'<rect x="{W - R - 70}" y="{T + 4 + 15 * s}" width="10" height="10" fill="{color}"/>'
                       f'<text x="{W - R - 56}" y="{T + 13 + 15 * s}">{e(label)}</text>')
    return "".join(out) + "</svg>"


def _plots(faces, images) -> dict[str, str]:
    """The report's three distributions, as inline SVG."""
    ages = [(faces.loc[faces["gender"] == g, "age"].to_numpy(np.float64), color, g)
            for g, color in (("female", "#d62728"), ("male", "#1f77b4"))]
    n = images.loc[images["status"].isin(list(READ_OK)), "n_faces"].astype(int).to_numpy()
    return {
        "age": _svg_hist(ages, np.arange(0, 105, 5), "Age by gender", "estimated age (years)", "faces"),
        "faces_per_image": _svg_hist([(n, "#2ca02c", "images")], np.arange(0, max(int(n.max()) if len(n) else 1, 1) + 2) - 0.5,
                                     "Faces per readable image (status ok or no_faces)", "faces per image", "images",
                                     integer_bins=True),
        "det_score": _svg_hist([(faces["det_score"].to_numpy(np.float64), "#9467bd", "faces")], np.linspace(0, 1, 41),
                               "Detection scores", "detection score", "faces"),
    }


def _html(rep: dict, plots: dict[str, str], gallery: list[dict] | None = None, previews: list[str] | None = None) -> str:
    from urllib.parse import quote

    from .skipped import skipped_html

    e = html.escape
    gallery, previews = gallery or [], previews or []
    gal = []
    for key in dict.fromkeys((c["band"], c["gender"]) for c in gallery):
        cells = "".join(
            f'<a href="{e(c["link"])}" title="{e(c["path"])}"><figure class="t"><img src="data:image/jpeg;base64,{c["jpeg"]}" '
            f'alt="face"><figcaption>{c["age"]:.0f} y &middot; {c["score"]:.2f}</figcaption></figure></a>'
            for c in gallery if (c["band"], c["gender"]) == key)
        gal.append(f"<h3>{e(key[0])}, {e(key[1])}</h3><div>{cells}</div>")
    gal_html = "".join(gal) or ("<p>No faces.</p>" if rep.get("faces_in_report", True) else _LEFT_OUT)
    folder_rows = "".join(
        f"<tr><td>{e(r['folder'])}</td><td>{r['files']}</td><td>{r['faces']}</td><td>{r['failed']}</td>"
        f"<td>{r['no_faces']}</td><td>{'' if r['mean_age'] is None else r['mean_age']}</td></tr>" for r in rep.get("folders", []))
    nf = rep.get("no_face_photos", {"count": 0, "sample": []})
    nf_rows = "".join(f"<li>{e(str(p))}</li>" for p in nf["sample"])
    prev = "".join(f'<a href="previews/{e(quote(p))}"><img class="p" src="previews/{e(quote(p))}" alt="{e(p)}"></a>'
                   for p in previews)
    rows = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in sorted(rep["status_counts"].items()))
    errs = "".join(
        f"<tr><td>{e(str(x['path']))}</td><td>{e(str(x['status']))}</td><td>{e(str(x['error']))}</td></tr>"
        for x in rep["errors"][:MAX_ERRORS_HTML]
    )
    more = f"<p>{rep['failed_files'] - MAX_ERRORS_HTML} more in report.json / the images table.</p>" if rep["failed_files"] > MAX_ERRORS_HTML else ""
    tp = rep["throughput"]
    fps = f"{tp['all_runs_files_per_s']:.2f}" if tp.get("all_runs_files_per_s") else "n/a"
    imgs = "".join(f'<figure id="plot-{k}">{v}</figure>' for k, v in plots.items())
    age = rep["age"]
    age_rows = "".join(
        f"<tr><td>{g}</td><td>{a['n']}</td><td>{a.get('mean', float('nan')):.1f}</td><td>{a.get('p50', float('nan')):.1f}</td></tr>"
        for g, a in age.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>faceproc report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}figure{{display:inline-block;margin:0 1em 1em 0}}
figure.t{{margin:2px;text-align:center;font-size:11px}}img.p{{max-width:320px;margin:4px}}th{{cursor:pointer}}</style>
<script>function sortBy(th){{const t=th.closest("table"),i=[...th.parentNode.children].indexOf(th),
rows=[...t.querySelectorAll("tr")].slice(1),num=rows.every(r=>!isNaN(parseFloat(r.children[i].textContent)||0)),
d=th.dataset.d=th.dataset.d==="1"?"-1":"1";rows.sort((a,b)=>{{const x=a.children[i].textContent,y=b.children[i].textContent;
return (num?(parseFloat(x)||0)-(parseFloat(y)||0):x.localeCompare(y))*d}});rows.forEach(r=>t.appendChild(r))}}</script></head><body>
<h1>faceproc report</h1>
<p>Output <code>{e(rep['output'])}</code> &middot; run {e(str(rep['run_id']))} &middot; model <code>{e(str(rep['model']))}</code> &middot; state {e(str(rep['state']))}</p>
<h2>Totals</h2><table><tr><th>files</th><th>faces</th><th>failed files</th><th>shards</th><th>work, all runs</th><th>files/s</th></tr>
<tr><td>{rep['files']}</td><td>{rep['faces']}</td><td>{rep['failed_files']}</td><td>{tp['shards']}</td><td>{tp['all_runs_seconds']} s for {tp['all_runs_files']} files in {tp['all_runs']} run(s)</td><td>{fps}</td></tr></table>
<h2>Files per status</h2><table><tr><th>status</th><th>files</th></tr>{rows}</table>
<h2>Estimated age</h2><table><tr><th>gender</th><th>faces</th><th>mean age</th><th>median age</th></tr>{age_rows}</table>
<h2>Distributions</h2>{imgs}
<h2 id="gallery">Faces by age band and gender</h2><p>Up to {GALLERY_PER_GROUP} faces a group, sampled; each links to its
preview or photo; caption: estimated age, detection score.</p>{gal_html}
<h2 id="folders">Folders</h2><p>{len(rep.get("folders", []))} folders shown (most files first; click a column to sort).</p>
<table id="folder-table"><tr><th onclick="sortBy(this)">folder</th><th onclick="sortBy(this)">files</th><th onclick="sortBy(this)">faces</th>
<th onclick="sortBy(this)">failed</th><th onclick="sortBy(this)">no faces</th><th onclick="sortBy(this)">mean age</th></tr>{folder_rows}</table>
<h2 id="previews">Previews</h2>{prev or ("<p>None written (annotate --previews N).</p>" if rep.get("faces_in_report", True) else _LEFT_OUT)}
<h2 id="no-faces">Photos where no face was found</h2><p>{nf["count"]} photos{" (first " + str(len(nf["sample"])) + " listed)" if nf["count"] > len(nf["sample"]) else ""}.</p><ul>{nf_rows}</ul>
<h2 id="not-rows">Files under the inputs that are not rows</h2>{skipped_html(rep.get("skipped"))}
<h2>Files that could not be processed</h2><table><tr><th>path</th><th>status</th><th>error</th></tr>{errs}</table>{more}
</body></html>"""


def build_report(out, faces_in_report: bool = True) -> dict[str, Any]:
    """report.json and report.html of an output folder (local or object store), rebuilt from its Parquet;
    `faces_in_report` False: no face in report.html (no gallery, no previews shown; docs/privacy.md)."""
    out = out if isinstance(out, Store) else Store(out)
    rep = summarize(out)
    faces, images = rep.pop("_frames")
    rep["faces_in_report"] = bool(faces_in_report)
    previews = out.list("previews", ".jpg") if faces_in_report else []
    gallery = _gallery(faces, images, previews) if faces_in_report else []
    rep["gallery_faces"] = len(gallery)
    out.write_text("report.json", json.dumps(rep, indent=1, default=str))
    out.write_text("report.html", _html(rep, _plots(faces, images), gallery, previews))
    return rep
