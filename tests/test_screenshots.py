"""tools/screenshots.py still drives the page end to end: six PNGs, light unlike dark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import CHROMIUM
from tests.processes import REPO, clean_env

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(150),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium at /usr/bin"),
]


def test_the_screenshot_script_saves_every_page_in_both_schemes(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tools.screenshots", "--out", str(tmp_path)],
                          cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=140, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(path.name for path in tmp_path.glob("*.png"))
    assert names == sorted(f"{page}-{scheme}.png" for page in ("lobby", "call", "ended")
                           for scheme in ("light", "dark"))
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    light, dark = ((tmp_path / f"ended-{s}.png").read_bytes() for s in ("light", "dark"))
    assert light != dark
    assert done.stdout.count("screenshots: wrote") == 6
