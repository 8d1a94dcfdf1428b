"""Build the book: ``python book/build.py [--execute on|cache|off] [--pages ...] [--out DIR]``.

``make book`` calls this. The Sphinx source folder is assembled next to the output
(``<out>-src``): ``book/index.md`` as the landing page, a copy of ``papers/`` and of
``figures/``, laid out as in the repository, so a page's own image links
(``../figures/<id>.png``) and links to other pages (``cohen2021.md``) resolve in the book
as they do on GitHub and in Jupyter. (Links into the repository would not do: Sphinx
resolves a linked source folder to its real path, outside the source folder, and then
finds no document behind a page-to-page link.) The configuration stays in ``book/conf.py``
(``sphinx-build -c book``), which reads the execution mode from the environment that
this script sets.

Exit status: Sphinx's, 0 when the site was built without a warning (warnings are errors
unless ``--allow-warnings``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
COPIED = ("papers", "figures")
IGNORED = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.ipynb")


def assemble_source(source: Path) -> Path:
    """Lay out the Sphinx source folder: index.md, papers/, figures/ (fresh copies)."""
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    shutil.copy2(BOOK / "index.md", source / "index.md")
    for name in COPIED:
        shutil.copytree(ROOT / name, source / name, ignore=IGNORED)
    return source


def build(out: Path, execute: str = "on", pages: list[str] | None = None, jobs: int | str = 1,
          allow_warnings: bool = False) -> int:
    from sphinx.cmd.build import build_main

    out = out.resolve()
    source = assemble_source(out.with_name(out.name + "-src"))
    doctrees = out.with_name(out.name + "-doctrees")
    os.environ["BOOK_EXECUTE"] = execute
    os.environ["BOOK_PAGES"] = " ".join(pages or [])
    args = ["-b", "html", "-E", "-q", "-c", str(BOOK), "-d", str(doctrees), "-j", str(jobs)]
    if not allow_warnings:
        args += ["-W", "--keep-going"]
    return build_main([*args, str(source), str(out)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", default=os.environ.get("BOOK_EXECUTE", "on"),
                        choices=["on", "cache", "off"],
                        help="on: run every page (default); cache: rerun only pages whose "
                             "code changed; off: run nothing, show the committed figures")
    parser.add_argument("--pages", nargs="*",
                        default=os.environ.get("BOOK_PAGES", "").replace(",", " ").split(),
                        help="execute only these pages (stems, e.g. xu2024); the rest as off")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book")
    parser.add_argument("--jobs", "-j", default="1",
                        help="Sphinx reads (and executes) this many pages side by side, "
                             "or 'auto'")
    parser.add_argument("--allow-warnings", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    status = build(args.out, args.execute, args.pages, args.jobs, args.allow_warnings)
    seconds = time.perf_counter() - start
    where = args.out.resolve() / "index.html"
    print(f"book: {'built' if status == 0 else 'FAILED'} in {seconds:.0f} s "
          f"(execute={args.execute}): {where}", file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
