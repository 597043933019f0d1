"""Render an HTML page in headless Chromium: a screenshot, and the errors the page raised.

Used by tests/report/test_html.py, and runnable as a script to regenerate the README's screenshot:

    PYTHONPATH=$PWD python tests/report/chromium_page.py [docs/report.png]

How "no console errors" is checked: :func:`with_collector` puts a small script at the top of
``<head>``, before the page's Content-Security-Policy ``<meta>`` (a meta policy governs only what
follows it, so the collector itself runs). It records uncaught errors (``error`` events, which
include resources that fail to load), ``console.error`` calls and CSP violations (any attempt to
fetch something: the page allows nothing), and on ``load`` writes them into a
``<pre id="collected-errors">``; ``chromium --dump-dom`` prints the DOM after load, so the errors
are read back from its output. :func:`collected_errors` parses that element.

Blank or not is decided on the screenshot's pixels (:func:`png_pixels`: PIL when installed, else a
pure-Python PNG decoder on :mod:`zlib` and NumPy).
"""

from __future__ import annotations

import html
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
"""Executables tried in turn (Debian's package is ``chromium``)."""

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--mute-audio")
# NB: --no-sandbox because CI runs as root, where Chromium refuses to start sandboxed;
# --disable-dev-shm-usage because containers give /dev/shm 64 MB, too little for a renderer.
TIMEOUT_S = 60

COLLECTOR = """<script>
(function () {
  var seen = [];
  window.addEventListener("error", function (e) {
    seen.push("error: " + (e.message || (e.target && (e.target.src || e.target.href)) || "resource"));
  }, true);
  window.addEventListener("securitypolicyviolation", function (e) {
    seen.push("csp: " + e.violatedDirective + " blocked " + e.blockedURI);
  });
  var original = console.error;
  console.error = function () {
    seen.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var pre = document.createElement("pre");
    pre.id = "collected-errors";
    pre.textContent = JSON.stringify(seen);
    document.body.appendChild(pre);
  });
})();
</script>"""


def find_chromium() -> str | None:
    """The path of a Chromium executable, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def usable_chromium() -> tuple[str | None, str]:
    """(the path of a Chromium that renders a trivial page, "") or (None, why not)."""
    browser = find_chromium()
    if browser is None:
        return None, "headless Chromium not installed (Debian: apt-get install chromium; .ci/run installs it)"
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe.html"
        probe.write_text("<!DOCTYPE html><html><body>ok</body></html>", encoding="utf-8")
        try:
            dump_dom(browser, probe)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            return None, f"{browser} cannot render a page here: {str(err)[-300:]}"
    return browser, ""


def with_collector(page: str) -> str:
    """``page`` with :data:`COLLECTOR` first in its ``<head>``."""
    head = re.search(r"<head[^>]*>", page, re.IGNORECASE)
    if head is None:
        raise ValueError("the page has no <head>")
    return page[:head.end()] + COLLECTOR + page[head.end():]


def _run(browser: str, args: list[str]) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=False)


def dump_dom(browser: str, path: Path) -> str:
    """The DOM after load, as Chromium serializes it."""
    result = _run(browser, ["--virtual-time-budget=2000", "--dump-dom", path.resolve().as_uri()])
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def collected_errors(dom: str) -> list[str]:
    """The errors :data:`COLLECTOR` wrote into the DOM; raises when it wrote nothing (it did not run)."""
    import json

    match = re.search(r'<pre id="collected-errors">(.*?)</pre>', dom, re.DOTALL)
    if match is None:
        raise AssertionError("the error collector did not run: no #collected-errors in the DOM")
    return list(json.loads(html.unescape(match.group(1))))


def screenshot(browser: str, path: Path, out: Path, size: tuple[int, int] = (1100, 1400)) -> Path:
    """A PNG of the page's top ``size`` pixels (width, height)."""
    result = _run(browser, [f"--window-size={size[0]},{size[1]}", f"--screenshot={out.resolve()}",
                            path.resolve().as_uri()])
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium --screenshot failed ({result.returncode}): {result.stderr[-2000:]}")
    return out


# -- PNG pixels ---------------------------------------------------------------------------------


def png_pixels(path: Path) -> np.ndarray:
    """The image as a (height, width, channels) uint8 array: PIL if installed, else :func:`decode_png`."""
    try:
        from PIL import Image
    except ImportError:
        return decode_png(path.read_bytes())
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"))


_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (no palette)


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit, non-interlaced greyscale or RGB(A) PNG decoded with zlib (PNG spec, section 9:
    each scanline starts with its filter byte; None, Sub, Up, Average and Paeth are undone here)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, chunks, header = 8, [], None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    n = _CHANNELS[colour]
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, 1 + width * n)
    return _unfilter(raw, width, height, n).reshape(height, width, n)


def _unfilter(raw: np.ndarray, width: int, height: int, n: int) -> np.ndarray:
    out = np.zeros((height, width * n), dtype=np.int64)
    prior = np.zeros(width * n, dtype=np.int64)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, n), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + prior) % 256
        else:  # Average (3) and Paeth (4) depend on the pixel to the left: one pixel at a time
            row = _unfilter_left(kind, line, prior, n)
        out[y], prior = row, row
    return out.astype(np.uint8)


def _unfilter_left(kind: int, line: np.ndarray, prior: np.ndarray, n: int) -> np.ndarray:
    row = [0] * len(line)
    for i, x in enumerate(line.tolist()):
        a = row[i - n] if i >= n else 0
        b = int(prior[i])
        c = int(prior[i - n]) if i >= n else 0
        if kind == 3:
            row[i] = (x + (a + b) // 2) % 256
            continue
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        row[i] = (x + pred) % 256
    return np.array(row, dtype=np.int64)


def ink(pixels: np.ndarray) -> tuple[float, float]:
    """(variance of the grey level, fraction of pixels darker than near-white) of an image."""
    grey = pixels[..., :3].astype(np.float64).mean(axis=-1)
    return float(grey.var()), float((grey < 240).mean())


# -- the README's screenshot --------------------------------------------------------------------


def readme_screenshot(out: Path) -> Path:
    """The README's picture: llama-3-8b on an H100, TP 2, seq 8192, the page's top."""
    from symcost import models
    from symcost.report.html import write_html_report

    browser = find_chromium()
    if browser is None:
        raise SystemExit("no Chromium found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as folder:
        page = write_html_report(Path(folder) / "report.html", models.get("llama-3-8b"), "h100",
                                 seq_len=8192, parallelism={"tensor_parallel": 2})
        return screenshot(browser, page, out, size=(1100, 1300))


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "report.png")
    print(readme_screenshot(target))
