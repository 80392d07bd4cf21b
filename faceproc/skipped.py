"""What under the inputs is not a row (discover.Discovery.skipped(), kept in the manifest), said the same way
in the terminal summary and in report.html: videos and other files by extension, folders that could not be
read with the reason, symlinks leading outside the inputs, second paths to one file."""

from __future__ import annotations

import html
from typing import Any


def _sample(items: list[str], count: int, n: int) -> str:
    return f" ({'; '.join(items[:n])}{' ...' if count > n else ''})" if n and items else ""


def _by_ext(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def skipped_lines(sk: dict[str, Any] | None, samples: int = 3) -> list[str]:
    """One line per kind of skipped thing that occurred (none: no line)."""
    sk = sk or {}
    out = []
    if sk.get("videos"):
        out.append(f"videos (not read): {_by_ext(sk['videos'])}")
    if sk.get("other_files"):
        out.append(f"other files (not images): {_by_ext(sk['other_files'])}")
    uf = sk.get("unreadable_folders") or {}
    if uf.get("count"):
        shown = _sample([f"{x['path']}: {x['reason']}" for x in uf["sample"]], uf["count"], samples)
        out.append(f"unreadable folders (not walked): {uf['count']}{shown}")
    ext = sk.get("external_symlinks") or {}
    if ext.get("count"):
        out.append(f"symlinks leading outside the inputs (not followed; --follow-external-symlinks follows them): "
                   f"{ext['count']}{_sample(ext['sample'], ext['count'], samples)}")
    dup = sk.get("duplicate_paths") or {}
    if dup.get("count"):
        out.append(f"second paths to a file already listed (one row per file): {dup['count']}")
    return out


def skipped_html(sk: dict[str, Any] | None) -> str:
    """The report's section: counts in full, the manifest's sample of paths."""
    e = html.escape
    sk = sk or {}
    parts = [f"<li>{e(line)}</li>" for line in skipped_lines(sk, samples=0)]
    if not parts:
        return "<p>Every file under the inputs is a row.</p>"
    uf = (sk.get("unreadable_folders") or {}).get("sample") or []
    ext = (sk.get("external_symlinks") or {}).get("sample") or []
    rows = "".join(f"<tr><td>{e(x['path'])}</td><td>{e(x['reason'])}</td></tr>" for x in uf)
    tables = (f'<table id="unreadable-folders"><tr><th>unreadable folder</th><th>reason</th></tr>{rows}</table>'
              if rows else "")
    tables += ("<p>Symlinks not followed:</p><ul>" + "".join(f"<li>{e(p)}</li>" for p in ext) + "</ul>" if ext else "")
    return f'<ul id="skipped">{"".join(parts)}</ul>{tables}'
