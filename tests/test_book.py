"""The book (``make book``) opens in a real browser: every page, image, formula and link.

The site is built without executing a cell (``--execute off``, what a reader gets from the
committed figures; an executed build needs the results store) into tmp_path and served
on 127.0.0.1. Debian's Chromium, driven by Playwright, opens every page of it and checks
that the page logs no console error and raises no script error, that it fetched nothing
from outside the site (the site is self-contained: MathJax is served from it), that every
<img> has loaded (naturalWidth > 0), that MathJax has typeset every formula on a page that
has one (at least one page does: the landing page), and that every link inside the site
points at a file of the build (and at an element with that id where it names one). A
full-page screenshot of each page goes to tmp_path/screenshots/.

Without a browser (``apt-get install chromium``) or Playwright the test skips, saying so.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("BOOK_CHROMIUM", "/usr/bin/chromium")
PAGES = sorted(p.stem for p in (ROOT / "papers").glob("*.md"))

# For each page: its console errors, script errors and failed or outside requests, its
# images and whether each loaded, its formulas and how many MathJax typeset, and its links.
INSPECT = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  return {
    images: images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth})),
    formulas: document.querySelectorAll("span.math, div.math").length,
    typeset: document.querySelectorAll("mjx-container").length,
    mathjax: Boolean(window.MathJax && MathJax.version),
    links: Array.from(document.querySelectorAll("a[href]"), a => a.getAttribute("href")),
  };
}"""


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for name, value in attrs if name in ("id", "name") and value)


@functools.cache
def element_ids(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


def browser_or_skip():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM} (install Debian's chromium: "
                    "apt-get install -y chromium; or set BOOK_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("myst_nb", reason="the book's tools are not installed (.[dev])")
    out = tmp_path_factory.mktemp("book") / "site"
    built = subprocess.run([sys.executable, str(ROOT / "book" / "build.py"),
                            "--execute", "off", "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def internal_target(site: Path, page_url: str, href: str, base: str) -> tuple[Path, str] | None:
    """The file in the build and the fragment that ``href`` on ``page_url`` names, or None
    for a link out of the site (another scheme or host)."""
    url = urljoin(page_url, href)
    parts = urlsplit(url)
    if not url.startswith(base):
        return None
    relative = unquote(parts.path[len(urlsplit(base).path):])
    target = site / relative
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def test_landing_page_lists_every_page_with_its_thumbnail():
    """Every page is in the landing page's navigation (Sphinx would only warn) and each
    thumbnail there is a committed figure."""
    index = (ROOT / "book" / "index.md").read_text(encoding="utf-8")
    assert [p for p in PAGES if f"\npapers/{p}\n" not in index] == []
    assert [p for p in PAGES if f":link: papers/{p}\n" not in index] == []
    thumbnails = [line.split(":img-top:")[1].strip() for line in index.splitlines()
                  if line.startswith(":img-top:")]
    assert len(thumbnails) == len(PAGES)
    assert [t for t in thumbnails if not (ROOT / t).is_file()] == []


@pytest.mark.slow
def test_every_page_renders_in_a_browser(site, served, tmp_path):
    sync_playwright = browser_or_skip()
    html = sorted(site.rglob("*.html"))
    html = [p for p in html if not p.relative_to(site).parts[0].startswith("_")]
    names = {p.relative_to(site).as_posix() for p in html}
    assert {f"papers/{p}.html" for p in PAGES} | {"index.html"} <= names
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()

    problems: list[str] = []
    math_pages = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        outside: list[str] = []

        def keep_inside(route):
            if route.request.url.startswith(served):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", keep_inside)
        for path in html:
            name = path.relative_to(site).as_posix()
            url = served + name
            events: list[str] = []
            outside.clear()
            page = context.new_page()
            page.on("console", lambda m, ev=events: m.type == "error" and ev.append(
                f"console error: {m.text}"))
            page.on("pageerror", lambda e, ev=events: ev.append(f"script error: {e}"))
            page.on("requestfailed", lambda r, ev=events: ev.append(
                f"request failed: {r.url} ({r.failure})"))
            page.on("response", lambda r, ev=events: r.status >= 400 and ev.append(
                f"HTTP {r.status}: {r.url}"))
            response = page.goto(url, wait_until="load")
            assert response is not None and response.ok, f"{name}: {response}"
            found = page.evaluate(INSPECT)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(screenshots / (name.replace("/", "_") + ".png")),
                            full_page=True)
            page.close()

            problems += [f"{name}: {e}" for e in events]
            problems += [f"{name}: fetched from outside the site: {u}" for u in outside]
            problems += [f"{name}: image did not load: {img['src']}"
                         for img in found["images"] if not img["width"]]
            if found["formulas"]:
                math_pages += 1
                if not found["mathjax"] or found["typeset"] < found["formulas"]:
                    problems.append(f"{name}: {found['typeset']} of {found['formulas']} "
                                    "formulas typeset by MathJax")
            for href in found["links"]:
                target = internal_target(site, url, href, served)
                if target is None:
                    continue
                file, fragment = target
                if not file.is_file():
                    problems.append(f"{name}: link {href!r} -> missing {file.relative_to(site)}")
                elif fragment and file.suffix == ".html" and fragment not in element_ids(file):
                    problems.append(f"{name}: link {href!r} -> no #{fragment} in "
                                    f"{file.relative_to(site)}")
        browser.close()

    assert math_pages >= 1, "no page has a formula: the MathJax check checked nothing"
    assert not problems, "\n".join(problems)
    assert len(list(screenshots.glob("*.png"))) == len(html)
    keep = os.environ.get("BOOK_SCREENSHOTS")
    if keep:  # e.g. BOOK_SCREENSHOTS=build/book-screenshots to look at them afterwards
        shutil.copytree(screenshots, keep, dirs_exist_ok=True)
