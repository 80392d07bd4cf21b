"""report.html for a person: what was looked at, when and with what (in words, not run ids), what was found, and
every face, folder, preview and photo a click away. One self-contained file; every list in it is capped
(report.py, gallery.py), so it stays under 1 MB whatever the archive. Technical details (run id, model hash,
shards, throughput) sit in a closed section at the end."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from urllib.parse import quote

from .gallery import GALLERY_PER_GROUP, WITHHELD
from .quality import SMALL_FACE, UNCERTAIN, face_label

e = html.escape
MAX_ERRORS_HTML = 200  # failed files listed on the page (report.json lists more, the images table all)
_LEFT_OUT = "<p>Left out: this report shows no faces (--no-faces-in-report; docs/privacy.md).</p>"

_VARIANTS = {
    "unfrozen": "a MobileNetV2 network trained end to end on the UTKFace photos",
    "frozen": "a MobileNetV2 network whose ImageNet layers were kept and whose age and gender layers were trained on UTKFace",
}
_DETECTORS = {"scrfd": "InsightFace's SCRFD face detector", "yunet": "OpenCV's YuNet face detector"}

CSS = """body{font-family:sans-serif;margin:1.5em auto;padding:0 1.5em;max-width:1600px;line-height:1.35}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;overflow-wrap:anywhere}
th{cursor:pointer}figure{display:inline-block;margin:0 1em 1em 0}.lead{font-size:1.05em;max-width:70em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:6px;margin:.4em 0 1em}
.grid a{text-decoration:none;color:inherit}figure.t{margin:0;text-align:center;font-size:12px}
figure.t img{width:112px;height:112px;image-rendering:auto;border-radius:3px}
.pgrid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px;margin:.4em 0 1em}
figure.pv{margin:0;font-size:12px;overflow-wrap:anywhere}img.p{width:100%;height:auto}
details{margin-top:2em;color:#444}"""

SORT_JS = """function sortBy(th){const t=th.closest("table"),i=[...th.parentNode.children].indexOf(th),
rows=[...t.querySelectorAll("tr")].slice(1),num=rows.every(r=>!isNaN(parseFloat(r.children[i].textContent)||0)),
d=th.dataset.d=th.dataset.d==="1"?"-1":"1";rows.sort((a,b)=>{const x=a.children[i].textContent,y=b.children[i].textContent;
return (num?(parseFloat(x)||0)-(parseFloat(y)||0):x.localeCompare(y))*d});rows.forEach(r=>t.appendChild(r))}"""


def file_link(path: str) -> str | None:
    """A link to a photo or folder, URL-encoded (a '#' or '?' in a name would cut it); None for a path a
    browser cannot open (an object-store URI)."""
    if path.startswith("/"):
        return Path(path).as_uri()
    return None if "://" in path else quote(path)


def _a(text: str, path: str) -> str:
    href = file_link(path)
    return f'<a href="{e(href)}">{e(text)}</a>' if href else e(text)  # no title: 500 folder rows, the size bound


def when(ts) -> str:
    """A run's finishing time for a person: local date and time with the zone."""
    if not ts:
        return "(not finished)"
    return dt.datetime.fromtimestamp(float(ts)).astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()


def model_words(rep: dict) -> str:
    """Which detector found the faces and which model estimated ages and genders, in a sentence."""
    cfg = rep.get("config") or {}
    det = _DETECTORS.get((cfg.get("detector") or {}).get("kind") or "scrfd", "the configured face detector")
    label = str(rep.get("model") or "?")
    variant, _, version = label.partition("@")
    what = _VARIANTS.get(variant, f"the model file {variant}")
    if version == "random-init":
        what = "random weights (a test run: the ages and genders mean nothing)"
    m = cfg.get("model") or {}
    rule = []
    if m.get("min_face_px"):
        rule.append(f"narrower than {m['min_face_px']:g} pixels")
    if m.get("min_sharpness"):
        rule.append("too blurred")
    rule_txt = (f" Faces {' or '.join(rule)} get no age or gender (they could not be judged)." if rule else "")
    return (f"Faces were found by {html.escape(det, quote=False)}; ages and genders were estimated by faceproc's “{e(variant)}” model, "
            f"{e(what)} (version {e(version or '?')}).{rule_txt} A gender the model gives between "
            f"{100 * UNCERTAIN[0]:.0f}% and {100 * UNCERTAIN[1]:.0f}% likely is shown as uncertain (?).")


def _header(rep: dict) -> str:
    inputs = rep.get("inputs") or []
    ins = ", ".join(_a(p, p) for p in inputs) or "(unknown)"
    wh = rep.get("withheld") or {}
    n_wh = sum(wh.values())
    bits = [f"{rep['files']:,} files", f"{rep['faces']:,} faces"]
    if n_wh:
        bits.append(f"{n_wh:,} of them too small or blurred to estimate")
    if rep.get("gender_uncertain"):
        bits.append(f"{rep['gender_uncertain']:,} with an uncertain gender")
    bits.append(f"{rep['failed_files']:,} files could not be read")
    return (f'<h1>Faces in {ins}</h1><p class="lead" id="summary">Photos in {ins}, analysed on '
            f'{e(when(rep.get("finished")))}: {", ".join(bits)}.</p><p class="lead" id="model">{model_words(rep)}</p>'
            f'<p class="lead" id="limits">{LIMITS}</p>')


# What every reader of the figures must know (docs/limitations.md holds the figures by group).
LIMITS = ("Ages are apparent ages, estimated from the face; gender is a binary label learned from a dataset, not a "
          "person's gender identity. The estimates are weakest for children (the gender of children under 10 is "
          "right about two times in three) and for people over 60, and some groups fare worse than others: see "
          "docs/limitations.md in faceproc's documentation before you use these figures.")


def _caption(c: dict) -> str:
    if c.get("band") == WITHHELD:
        return "too small" if c.get("withheld") == SMALL_FACE else "blurred"
    label = face_label("female" if (c.get("female_prob") or 0) >= 0.5 else "male", c.get("female_prob"), c["age"])
    mark, _, age = label.partition(" ")
    return f"{age} y &middot; {e(mark)}" if age else e(mark)


def _title(c: dict) -> str:
    prob = "" if c.get("female_prob") is None else f", female {100 * c['female_prob']:.0f}%"
    return f"{c['rel']} (detection {c['score']:.2f}{prob})"


def _gallery(gallery: list[dict]) -> str:
    out = []
    for band in dict.fromkeys(c["band"] for c in gallery):  # both genders of a band in one grid (captions say which)
        group = [c for c in gallery if c["band"] == band]
        cells = "".join(
            f'<a href="{e(c["link"])}" title="{e(_title(c))}"><figure class="t"><img src="data:image/jpeg;base64,{c["jpeg"]}" alt="face"><figcaption>{_caption(c)}'
            f'</figcaption></figure></a>' for c in group)
        n = {g: sum(c["gender"] == g for c in group) for g in ("female", "male")}
        head = band if band == WITHHELD else f"{band} years ({n['female']} female, {n['male']} male shown)"
        out.append(f'<h3>{e(head)}</h3><div class="grid">{cells}</div>')
    return "".join(out) or "<p>No faces.</p>"


def _folder_rows(rep: dict, anchors: dict[str, str]) -> str:
    rows = []
    for r in rep.get("folders", []):
        n_pv = len(r.get("previews") or [])
        pv = f'<a href="#{anchors[r["folder"]]}">{n_pv} preview{"s" if n_pv != 1 else ""}</a>' if n_pv else ""
        rows.append(f"<tr><td>{_a(r.get('rel') or r['folder'], r['folder'])}</td><td>{r['files']}</td><td>{r['faces']}</td>"
                    f"<td>{r['failed']}</td><td>{r['no_faces']}</td><td>{'' if r['mean_age'] is None else r['mean_age']}</td>"
                    f"<td>{pv}</td></tr>")
    return "".join(rows)


def _previews(rep: dict, anchors: dict[str, str]) -> str:
    groups: dict[str, list[dict]] = {}
    for p in rep.get("previews", []):
        groups.setdefault(p["folder"], []).append(p)
    rel = {r["folder"]: r.get("rel") or r["folder"] for r in rep.get("folders", [])}
    out = []
    for folder, items in groups.items():
        cells = "".join(
            f'<figure class="pv"><a href="previews/{e(quote(p["name"]))}"><img class="p" src="previews/{e(quote(p["name"]))}" '
            f'alt="{e(p["rel"])}"></a><figcaption>{_a(p["rel"], p["path"])}</figcaption></figure>' for p in items)
        out.append(f'<h3 id="{anchors.get(folder, "")}">{_a(rel.get(folder, folder), folder)}</h3><div class="pgrid">{cells}</div>')
    return "".join(out)


def page(rep: dict, plots: dict[str, str], gallery: list[dict] | None = None) -> str:
    from .skipped import skipped_html

    gallery = gallery or []
    faces = rep.get("faces_in_report", True)  # False: no face on the page (stopnet; docs/privacy.md)
    folders_with_previews = dict.fromkeys(p["folder"] for p in rep.get("previews", []))
    anchors = {f: f"pv-{i}" for i, f in enumerate(folders_with_previews)}
    nf = rep.get("no_face_photos", {"count": 0, "sample": []})
    nf_rows = "".join(f"<li>{_a(r, p)}</li>" for p, r in zip(nf["sample"], nf.get("sample_rel") or nf["sample"]))
    rows = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in sorted(rep["status_counts"].items()))
    errs = "".join(f"<tr><td>{_a(str(x.get('rel') or x['path']), str(x['path']))}</td><td>{e(str(x['status']))}</td>"
                   f"<td>{e(str(x['error']))}</td></tr>" for x in rep["errors"][:MAX_ERRORS_HTML])
    more = (f"<p>{rep['failed_files'] - MAX_ERRORS_HTML} more in report.json / the images table.</p>"
            if rep["failed_files"] > MAX_ERRORS_HTML else "")
    tp = rep["throughput"]
    fps = f"{tp['all_runs_files_per_s']:.2f}" if tp.get("all_runs_files_per_s") else "n/a"
    imgs = "".join(f'<figure id="plot-{k}">{v}</figure>' for k, v in plots.items())
    age_rows = "".join(
        f"<tr><td>{g}</td><td>{a['n']}</td><td>{a.get('mean', float('nan')):.1f}</td><td>{a.get('p50', float('nan')):.1f}</td></tr>"
        for g, a in rep["age"].items())
    th = "".join(f'<th onclick="sortBy(this)">{h}</th>' for h in ("folder", "files", "faces", "failed", "no faces",
                                                                     "mean age", "previews"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Faces in {e(", ".join(rep.get("inputs") or []) or "photos")}</title><style>{CSS}</style><script>{SORT_JS}</script></head><body>
{_header(rep)}
<h2>Files per status</h2><table><tr><th>status</th><th>files</th></tr>{rows}</table>
<h2>Estimated age</h2><table><tr><th>gender</th><th>faces</th><th>mean age</th><th>median age</th></tr>{age_rows}</table>
<h2>Distributions</h2>{imgs}
<h2 id="gallery">Faces by age band and gender</h2><p>Up to {GALLERY_PER_GROUP} faces per band and gender, sampled; each
links to its preview or photo. Caption: estimated age and gender (F, M, or ? when uncertain); the age decides the band.</p>{_gallery(gallery) if faces else _LEFT_OUT}
<h2 id="folders">Folders</h2><p>{len(rep.get("folders", []))} folders shown (most files first; click a column to sort; a
folder's name opens it, its previews are below).</p>
<table id="folder-table"><tr>{th}</tr>{_folder_rows(rep, anchors)}</table>
<h2 id="previews">Previews</h2>{_previews(rep, anchors) or ("<p>None written (annotate --previews N).</p>" if faces else _LEFT_OUT)}
<h2 id="no-faces">Photos where no face was found</h2><p>{nf["count"]} photos{" (first " + str(len(nf["sample"])) + " listed)" if nf["count"] > len(nf["sample"]) else ""}.</p><ul>{nf_rows}</ul>
<h2 id="not-rows">Files under the inputs that are not rows</h2>{skipped_html(rep.get("skipped"))}
<h2>Files that could not be processed</h2><table><tr><th>file</th><th>status</th><th>error</th></tr>{errs}</table>{more}
<details id="technical"><summary>Technical details</summary><p>Output <code>{e(rep['output'])}</code> &middot; run
{e(str(rep['run_id']))} &middot; model <code>{e(str(rep['model']))}</code> &middot; state {e(str(rep['state']))} &middot;
{tp['shards']} shards &middot; {tp['all_runs_seconds']} s of work for {tp['all_runs_files']} files in {tp['all_runs']} run(s),
{fps} files/s.</p></details>
</body></html>"""
