"""Every notebook executes top to bottom at quick size (DIFFUSIONLAB_QUICK=1)."""

import pathlib

import jupytext
import nbformat
import pytest
from conftest import ONE_DEVICE_XLA_FLAGS
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_quick(path, monkeypatch):
    monkeypatch.setenv("DIFFUSIONLAB_QUICK", "1")
    monkeypatch.setenv("XLA_FLAGS", ONE_DEVICE_XLA_FLAGS)
    paired = path.with_suffix(".py")
    assert paired.exists(), f"{path.name} is paired with a jupytext {paired.name}"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "notebooks are stored without outputs"
    source = [c.source for c in jupytext.read(paired).cells if c.cell_type == "code"]
    assert source == [c.source for c in nb.cells if c.cell_type == "code"], \
        "the .ipynb and its .py are out of sync (run jupytext --sync)"
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()


def test_every_notebook_is_paired():
    assert NOTEBOOKS, "notebooks/ holds the interactive explorations"
    py = {p.stem for p in NOTEBOOKS[0].parent.glob("*.py")}
    assert py == {p.stem for p in NOTEBOOKS}, "each notebooks/X.py has its X.ipynb and vice versa"
