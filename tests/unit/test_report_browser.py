"""report.html in a real headless browser (Debian's chromium; .ci/run installs it): it renders offline,
the gallery, the folder table (sortable) and the previews are there, and a screenshot is not blank."""

import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.helpers import annotated_sample


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    warnings.warn("BROWSER TEST SKIPPED: no chromium on PATH (.ci/run installs Debian's chromium)")
    pytest.skip("no chromium on PATH")


def _run(browser, *args, timeout=120):
    cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-background-networking", "--allow-file-access-from-files", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_report_in_headless_chromium(tmp_path, fakes):
    browser = _chromium()
    out = annotated_sample(tmp_path)
    url = (out / "report.html").as_uri()
    dom = _run(browser, "--virtual-time-budget=3000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the DOM after the page's script ran: gallery thumbnails, the sortable folder table, the previews
    assert len(re.findall(r'<figure class="t">', html)) == 6
    assert 'id="folder-table"' in html and html.count("onclick=\"sortBy(this)\"") >= 6
    assert len(re.findall(r'<img class="p" src="previews/', html)) == 2
    assert "Photos where no face was found" in html
    # the three distributions, drawn as inline SVG (bars with their counts as tooltips)
    assert len(re.findall(r'<figure id="plot-[a-z_]+"><svg ', html)) == 3 and html.count("<rect ") >= 3
    shot = tmp_path / "report.png"
    r = _run(browser, f"--screenshot={shot}", "--window-size=1280,2400", "--virtual-time-budget=3000", url)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert img.shape == (2400, 1280) and img.std() > 10  # rendered content, not a blank page
    # no network: every resource is inline or a relative file next to the report
    assert not re.search(r'(src|href)="(https?:)?//', (out / "report.html").read_text())
