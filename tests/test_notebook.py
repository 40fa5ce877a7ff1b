"""notebooks/quickstart.ipynb runs top to bottom (smoke-sized) in a fresh kernel."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _outputs(cell):
  text, images = [], 0
  for out in cell.get("outputs", []):
    text.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    images += "image/png" in out.get("data", {})
  return "".join(text), images


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  monkeypatch.setenv("FLASEG_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("FLASEG_NOTEBOOK_WORKDIR", workdir)
  monkeypatch.setenv("FLASEG_NOTEBOOK_CHECKPOINT", workdir)  # also run the loading cell
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  with open(os.path.join(REPO, "notebooks", "quickstart.ipynb")) as f:
    nb = nbformat.read(f, as_version=4)
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(REPO, "notebooks")}}).execute()
  code = [c for c in nb.cells if c.cell_type == "code"]
  text = "".join(_outputs(c)[0] for c in code)
  assert "mIoU" in text and "Traceback" not in text
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "6"))
  figures = [_outputs(c)[1] for c in code]
  assert sum(figures) == 3  # curves + IoU, predictions of the run, of the loaded checkpoint
