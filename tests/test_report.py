"""The audit's HTML report and notebook (issue 9): plots are really drawn, in a browser and in Jupyter."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from curate import audit as audit_mod
from curate.report import write_html

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_notebook_executes(audit_run, tmp_path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    *_, res = audit_run
    nb = nbformat.read(REPO / "notebooks" / "audit.ipynb", as_version=4)
    os.environ["CURATE_RUN_DIR"] = str(res.run_dir)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        os.environ.pop("CURATE_RUN_DIR", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert "violations: 0" in "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(audit_run, tmp_path) -> None:
    *_, res = audit_run
    html = tmp_path / "audit.html"
    write_html(audit_mod.audit(res.run_dir), html)
    png = tmp_path / "audit.png"
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
                          f"--screenshot={png}", "--window-size=1000,2400", html.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert png.exists() and png.stat().st_size > 10_000, out.stderr[-2000:]
    # the plots are visibly there: many distinct non-white pixels in the plot colours
    from PIL import Image

    img = Image.open(png).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    blue = sum(n for n, c in colours if c[2] > 120 and c[0] < 120)  # the actual-share bars (#4e79a7)
    assert blue > 2_000, f"no plot pixels found ({blue})"
