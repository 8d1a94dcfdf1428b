"""The README's gallery and CLAIMS.md stay in step with the pages and the references."""

from __future__ import annotations

import re
from pathlib import Path

from experiments import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.stem for p in (ROOT / "papers").glob("*.md") if p.stem != "README")


def test_claims_md_is_the_generated_claim_table(monkeypatch):
    """CLAIMS.md equals `python -m experiments list --markdown` on the committed
    references: a reference rewritten without regenerating the file fails here."""
    monkeypatch.delenv("EXPERIMENTS_FIGURES", raising=False)
    expected = cli.claims_page()
    assert (ROOT / "CLAIMS.md").read_text(encoding="utf-8") == expected, (
        "CLAIMS.md is out of date: python -m experiments list --markdown > CLAIMS.md")


def test_readme_gallery_links_every_page_and_committed_images():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r'href="papers/([a-z0-9]+)\.md"', readme))
    assert sorted(set(PAGES) - linked) == []
    images = re.findall(r'<img src="([^"]+)"', readme)
    assert len(images) == len(PAGES)
    assert [i for i in images if not (ROOT / i).is_file()] == []
    for name in ("CLAIMS.md", "GUIDE.md"):
        assert f"]({name})" in readme and (ROOT / name).is_file()
