"""notebooks/*.ipynb run end to end on CPU at their smallest size (nbclient), and are committed without outputs."""
import os

import pytest

from score_jax.testing.smoke import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = ("quickstart.ipynb", "bring_your_own.ipynb")
FIGURES = {"quickstart.ipynb": 3, "bring_your_own.ipynb": 2}  # overlay, kept tokens per frame (+ the curve)


def _read(name):
  return nbformat.read(os.path.join(REPO, "notebooks", name), as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_no_outputs_and_a_parameter_cell(name):
  nb = _read(name)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code)
  params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
  assert len(params) == 1 and "SMALL = True" in params[0].source


# Both slow (quickstart trains and evaluates the smoke run, about 35 s on 2 cores; bring_your_own about 50 s);
# their parameters and structure are checked by the default tests above.
@pytest.mark.parametrize("name", [pytest.param("quickstart.ipynb", marks=pytest.mark.slow),
                                  pytest.param("bring_your_own.ipynb", marks=pytest.mark.slow)])
def test_notebook_runs_end_to_end_at_its_smallest_size(name, tmp_path, monkeypatch):
  pytest.importorskip("ipykernel")
  if name == "bring_your_own.ipynb":
    pytest.importorskip("torch")  # the tiny random checkpoint is written with transformers' PyTorch model
  nb = _read(name)
  at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  overrides = "SMALL = True\n" + (f"WORKDIR = {str(tmp_path / 'runs')!r}\n" if name == "quickstart.ipynb" else "")
  nb.cells.insert(at + 1, nbformat.v4.new_code_cell(overrides))
  for var in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES"):  # the kernel gets one CPU device, as a user's would
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders land in the test's
  client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError naming the cell on any error
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
  assert len(images) == FIGURES[name]
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "retention:" in text and "time to first token" in text
