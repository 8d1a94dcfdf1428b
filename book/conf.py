"""Sphinx configuration of the book: ``make book`` renders ``papers/*.md`` as a static site.

``book/build.py`` assembles the source folder (``index.md`` from here, copies of
``papers/`` and ``figures/``) and runs Sphinx with this configuration.

The pages are jupytext Markdown notebooks; myst-nb reads them through jupytext and
executes them with the project's kernel. How is chosen by the environment:

- ``BOOK_EXECUTE=on`` (the default): every page runs top to bottom at quick scale. Its
  ``experiments.run(...)`` cells read the results store (``EXPERIMENTS_CACHE``, default
  ``.cache/experiments``) and compute only what is missing there, so after
  ``make figures`` a rebuild costs the pages' own cells and the redrawing, not the runs.
- ``BOOK_EXECUTE=cache``: a page whose code cells are unchanged since the last build
  keeps that build's outputs (jupyter-cache in ``.cache/book``); only edited pages run.
  The outputs do not follow a newer result in the store until the page runs again.
- ``BOOK_EXECUTE=off``: no cell runs. Code is shown without outputs; each page still
  shows its committed reference figure, the Markdown image under the cell that draws it.
- ``BOOK_PAGES="xu2024 lewkowycz2020"``: only these pages execute, the rest as with off.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent

project = "Training dynamics, reproduced"
author = "The training-dynamics contributors"
copyright = "the training-dynamics contributors, MIT licence"

extensions = ["myst_nb", "sphinx_design"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "papers/README.md"]
root_doc = "index"

# --- reading the pages -------------------------------------------------------------
# Every page is a jupytext Markdown notebook (front matter: format_name markdown).
nb_custom_formats = {".md": ["jupytext.reads", {"fmt": "md:markdown"}]}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # `[§5](cohen2021.md#5-...)` style links resolve

# --- executing them ----------------------------------------------------------------
_MODES = {"on": "force", "force": "force", "cache": "cache", "off": "off"}
_execute = os.environ.get("BOOK_EXECUTE", "on").strip().lower() or "on"
if _execute not in _MODES:
    raise ValueError(f"BOOK_EXECUTE={_execute!r}; allowed: on, cache, off")
nb_execution_mode = _MODES[_execute]
_only = os.environ.get("BOOK_PAGES", "").replace(",", " ").split()
_pages = sorted(p.stem for p in (ROOT / "papers").glob("*.md"))
_unknown = sorted(set(_only) - set(_pages))
if _unknown:
    raise ValueError(f"BOOK_PAGES: unknown page(s) {_unknown}; allowed: {_pages}")
nb_execution_excludepatterns = ["index.md"] + [
    f"papers/{page}.md" for page in _pages if _only and page not in _only]
nb_execution_timeout = 3600  # a cold store computes a page's runs (minutes at quick scale)
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
nb_execution_cache_path = str(ROOT / ".cache" / "book")
nb_merge_streams = True
# A built page has no kernel behind it, so an explorer's live widget could not draw: show
# the PNG of its default state that the widget carries instead (experiments.explorers).
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
# ... and so no widget scripts from a CDN either: the site stays self-contained.
nb_ipywidgets_js = {}
if nb_execution_mode != "off":
    tags.add("executed")  # noqa: F821  (Sphinx injects `tags`); read by index.md
# The kernel inherits this process's environment: draw figures inline whatever the
# caller's MPLBACKEND (the tests set Agg).
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

# --- the site ----------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
}
# The theme reads its colour mode from the page context; without one it logs a console
# error on a reader's first visit. Light: the figures are drawn on white.
html_context = {"default_mode": "light"}
html_last_updated_fmt = None
html_show_sourcelink = False

# MathJax 3 is served from the site itself (copied from the django-static-mathjax
# wheel, MathJax 3.2.2 as released), so math renders without a network connection.
mathjax_path = "mathjax/tex-mml-chtml.js"
_MATHJAX_KEEP = ("tex-mml-chtml.js", "input", "output", "a11y", "ui", "sre", "adaptors")


def _mathjax_source() -> Path:
    import mathjax  # django-static-mathjax: a copy of MathJax's release files

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = _mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for name in _MATHJAX_KEEP:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("svg"))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)


def setup(app):
    app.connect("build-finished", _copy_mathjax)
