"""The report's three distributions as inline SVG: drawn here instead of with matplotlib, which saves ~0.5 s
at the end of every run (its import and rendering) and a dependency."""

from __future__ import annotations

import html

import numpy as np

from .schema import READ_OK


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


def plots(faces, images) -> dict[str, str]:
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
