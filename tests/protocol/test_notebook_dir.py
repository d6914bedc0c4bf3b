"""The notebook's folder is importable (issue 12): nbclient starts the kernel
in the notebook's folder, and a module beside the notebook imports, also
after %cd elsewhere and back, as in ipykernel (sys.path[0] == '')."""
import nbformat
from nbclient import NotebookClient

import pyrometer_testing  # noqa: F401  (the temporary kernelspecs)


def test_module_beside_notebook_imports(tmp_path):
    nbdir = tmp_path / "project"
    nbdir.mkdir()
    (nbdir / "helper_beside.py").write_text("ANSWER = 42\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sys, os\nprint(repr(sys.path[0]), os.getcwd())"),
        nbformat.v4.new_code_cell("import helper_beside\nprint(helper_beside.ANSWER)"),
    ]
    NotebookClient(nb, kernel_name="pyrometer", timeout=60,
                   resources={"metadata": {"path": str(nbdir)}}).execute()
    out = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]
    assert out[0] == "'' %s\n" % nbdir
    assert out[1] == "42\n"
