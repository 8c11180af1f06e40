"""docs/tutorial.ipynb: stored without outputs, and it runs top to bottom on a CPU."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "tutorial.ipynb"

#: A cell that runs longer has hung (a guard, not a speed test: speed is not asserted in tests).
#: The tutorial takes about 20-26 s with 2 threads on an idle 2-core machine (printed below).
CELL_TIMEOUT_S = 600


def test_the_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and len(nb.cells) > len(code)  # code explained by markdown cells
    for cell in code:
        assert cell.outputs == [], cell.source[:80]
        assert cell.execution_count is None, cell.source[:80]
        assert not {"execution", "collapsed", "scrolled"} & cell.metadata.keys(), cell.metadata
    assert nb.metadata.kernelspec.name == "python3"


def test_the_notebook_runs_on_a_cpu_with_two_threads(tmp_path, monkeypatch):
    """Run every cell in a fresh kernel in an empty folder (no results/ there, so the notebook
    writes its own tiny results tree, in the temporary folder), then check what it computed."""
    workdir, scratch = tmp_path / "work", tmp_path / "tmp"
    workdir.mkdir()
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the kernel's tempfile.mkdtemp()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "2")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as for a user
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    n_cells = len(nb.cells)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "assert not torch.cuda.is_available()\n"
            "r = {name: s['scores']['pearson_r'] for name, s in scores.items()}\n"
            "assert r['model'] > 0.8 and r['model'] > r['group_mean'] + 0.5, r\n"
            "assert min(share) > 1 / 8, share  # more than chance on its own block\n"
            "assert set(summary['model']) == {'model', 'group_mean'}, summary\n"
            f"assert str(root).startswith({str(scratch)!r}), root\n"
            "print('checked')"
        )
    )
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": workdir}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    print(f"docs/tutorial.ipynb ran in {elapsed:.1f} s")
    assert nb.cells[-1].outputs[0]["text"].strip() == "checked"
    assert not list(workdir.iterdir())  # nothing written in the working folder
    assert list(scratch.glob("modalmerge_tutorial_*/results/planted/eval/summary.csv"))
    # the attention figure is drawn in the notebook
    figures = [
        cell
        for cell in nb.cells[:n_cells]
        if cell.cell_type == "code"
        and any("image/png" in out.get("data", {}) for out in cell.outputs)
    ]
    assert any("plot_attention" in cell.source for cell in figures)
