"""flaseg's import structure: no import cycle, the main/train layering, no PyTorch.

The import graph is read from the source with `ast`, imports inside functions included: a
lazy import hides a cycle from Python at import time, not from the reader of the code.
"""
import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# PyTorch and the packages built on it; flaseg needs none of them (reference/torch/ does).
TORCH_PACKAGES = ("torch", "torchvision", "timm", "mmseg", "mmcv", "mmengine")


def modules(root: str, package: str) -> dict:
  """{module name: file} of every .py file of `package` in the folder `root`."""
  out = {}
  for folder, _, files in os.walk(os.path.join(root, package)):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        parts = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
        if parts[-1] == "__init__":
          parts.pop()
        out[".".join(parts)] = path
  return out


def _nearest(name: str, known) -> str | None:
  """`name` or its longest dotted prefix that is a module in `known`; None if none is."""
  parts = name.split(".")
  while parts:
    if ".".join(parts) in known:
      return ".".join(parts)
    parts.pop()
  return None


def _imported(node, module: str, is_package: bool, known) -> list:
  """The modules of `known` that one import statement of `module` imports.

  `from p import x` is module p.x where that file exists, else (a name defined in p) p.
  """
  if isinstance(node, ast.Import):
    return [_nearest(a.name, known) for a in node.names]
  if node.level:  # relative: from the module's package, one level up per extra dot
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    prefix = ".".join(base + ([node.module] if node.module else []))
  else:
    prefix = node.module
  return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else _nearest(prefix, known)
          for a in node.names]


def _parse(path: str):
  with open(path) as f:
    return ast.parse(f.read(), path)


def import_graph(root: str, package: str) -> dict:
  """{module: set of the package's modules it imports}, from every import in its file."""
  known = modules(root, package)
  graph = {}
  for name, path in sorted(known.items()):
    deps = set()
    for node in ast.walk(_parse(path)):
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        deps.update(_imported(node, name, path.endswith("__init__.py"), known))
    graph[name] = deps - {None, name}
  return graph


def find_cycle(graph: dict) -> list | None:
  """One cycle of `graph` as [m0, m1, ..., m0] (depth-first, sorted order), or None."""
  done, stack = set(), []

  def visit(m):
    stack.append(m)
    for d in sorted(graph[m]):
      if d in stack:
        return stack[stack.index(d):] + [d]
      if d not in done:
        found = visit(d)
        if found:
          return found
    stack.pop()
    done.add(m)
    return None

  for m in sorted(graph):
    if m not in done:
      found = visit(m)
      if found:
        return found
  return None


def test_no_import_cycle_in_flaseg():
  cycle = find_cycle(import_graph(REPO, "flaseg"))
  assert cycle is None, "import cycle in flaseg: " + " -> ".join(cycle)


def test_main_and_train_are_the_top_layers():
  """flaseg.main (the CLI) is imported by nothing; flaseg.train by flaseg.main only, so that
  models, data, evaluation and conversion never depend on the training loop."""
  graph = import_graph(REPO, "flaseg")
  assert "flaseg.main" in graph and "flaseg.train" in graph
  of_main = sorted(m for m, deps in graph.items() if "flaseg.main" in deps)
  assert not of_main, f"flaseg.main is the CLI, yet imported by {of_main}"
  of_train = sorted(m for m, deps in graph.items()
                    if "flaseg.train" in deps and m != "flaseg.main")
  assert not of_train, f"only flaseg.main may import flaseg.train; also imported by {of_train}"


def test_cycle_check_finds_a_planted_cycle(tmp_path):
  """The checks above, on a fake package: a -> b -> a through a relative import inside a
  function is found; `from fake.sub import thing` resolves to the package fake.sub."""
  pkg = tmp_path / "fake"
  (pkg / "sub").mkdir(parents=True)
  files = {"__init__.py": "", "a.py": "from fake import b\n",
           "b.py": "import os\n\ndef f():\n  from . import a\n",
           "c.py": "import fake.a\nimport numpy\nfrom fake.sub import thing\n",
           "sub/__init__.py": "from .x import thing\n", "sub/x.py": "thing = 1\n"}
  for name, text in files.items():
    (pkg / name).write_text(text)
  graph = import_graph(str(tmp_path), "fake")
  assert graph == {"fake": set(), "fake.a": {"fake.b"}, "fake.b": {"fake.a"},
                   "fake.c": {"fake.a", "fake.sub"}, "fake.sub": {"fake.sub.x"},
                   "fake.sub.x": set()}
  assert find_cycle(graph) == ["fake.a", "fake.b", "fake.a"]
  (pkg / "b.py").write_text("import os\n")
  assert find_cycle(import_graph(str(tmp_path), "fake")) is None


def _foreign_imports(root: str, package: str) -> list:
  """(module, line, inside a function, name) of every import of a PyTorch package or of the
  repository's `reference` folder."""
  found = []
  for module, path in sorted(modules(root, package).items()):

    def visit(node, in_function):
      for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
          names = [a.name for a in child.names]
        elif isinstance(child, ast.ImportFrom) and not child.level:
          names = [child.module]
        else:
          names = []
        for name in names:
          if name.split(".")[0] in TORCH_PACKAGES + ("reference",):
            found.append((module, child.lineno, in_function, name))
        visit(child, in_function or isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(_parse(path), False)
  return found


def test_flaseg_source_imports_torch_only_to_read_pth_files():
  """The one PyTorch import in flaseg is torch inside a function of flaseg.convert (reading a
  .pth file on demand); flaseg never imports the reference/ folder."""
  bad = [f for f in _foreign_imports(REPO, "flaseg")
         if not (f[0] == "flaseg.convert" and f[2] and f[3] == "torch")]
  assert not bad, f"(module, line, in a function, import) not allowed in flaseg: {bad}"


@pytest.mark.slow
def test_importing_all_of_flaseg_loads_no_torch():
  """Every module of flaseg, imported in a fresh interpreter (flaseg.main runs its app only
  as __main__), leaves torch, its ecosystem and reference/ out of sys.modules."""
  code = textwrap.dedent(f"""
      import importlib, json, pkgutil, sys
      import flaseg
      names = [m.name for m in pkgutil.walk_packages(flaseg.__path__, "flaseg.")]
      for name in names:
        importlib.import_module(name)
      loaded = sorted(m for m in sys.modules
                      if m.split(".")[0] in {TORCH_PACKAGES + ("reference",)!r})
      print(json.dumps({{"imported": names, "loaded": loaded}}))
  """)
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  result = json.loads(r.stdout.strip().splitlines()[-1])
  assert set(result["imported"]) == set(modules(REPO, "flaseg")) - {"flaseg"}
  assert not result["loaded"], f"importing flaseg loaded {result['loaded']}"
