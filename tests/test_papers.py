"""Every paper page executes top to bottom at quick scale (``make notebooks``)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "papers").glob("*.md"))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_paper_page_executes(page, tmp_path, monkeypatch, session_store):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("EXPERIMENTS_CACHE", str(session_store[0]))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(page)
    client = NotebookClient(notebook, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(page.parent)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert list((tmp_path / "figures").glob("*")) == [], "a paper page must not write figures/"
