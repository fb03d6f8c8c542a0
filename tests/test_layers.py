"""Imports point down the layers (ARCHITECTURE.md), in function bodies too.

An import inside a function hides a cycle from Python's import machinery but not from the
design: a package that imports a higher one, however late, cannot be understood, tested or
reused without it. The ranks are written here once; ARCHITECTURE.md explains them.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ls_keras")

# The rank of each package of ls_keras; a module may import only modules of its rank or lower.
RANKS = {
  "core": 0,  # settings, errors, checks, hardware, workdirs, checkpoints, plots
  "data": 1,
  "models": 1,  # networks, heads, model files (export, model_file)
  "calibration": 2,  # metrics and temperature scaling, which training reports
  "training": 3,
  "projection": 4,  # the section analyses that build or read trained models
  "distillation": 4,
  "mutual_information": 4,
  "experiments": 5,
  "paper": 6,
}
COMMANDS = 7  # The top-level modules: train, distill, ..., and cli.


def rank(module: str) -> int:
  """The rank of a dotted module name inside ls_keras ("ls_keras.training.run" -> 3)."""
  parts = module.split(".")
  assert parts[0] == "ls_keras", module
  if len(parts) == 1:
    return -1  # The package itself holds only the version.
  if parts[1] in RANKS:
    return RANKS[parts[1]]
  if os.path.isfile(os.path.join(ROOT, parts[1] + ".py")):
    return COMMANDS
  raise AssertionError(f"{module}: a package with no rank in RANKS; give it one.")


def imported(source: str, module: str, is_package: bool) -> list:
  """(line, module) of every ls_keras import in `source`, at any depth (functions too)."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "ls_keras"]
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # Relative: resolved against the importing module's package.
        package = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join(package + ([node.module] if node.module else []))
      else:
        base = node.module or ""
      if base.split(".")[0] != "ls_keras":
        continue
      if base == "ls_keras":  # `from ls_keras import training`: the named modules.
        found += [(node.lineno, _submodule(a.name)) for a in node.names]
      else:
        found.append((node.lineno, base))
  return found


def _submodule(name: str) -> str:
  """ls_keras.<name> for a module or package of ls_keras; ls_keras for a name it defines."""
  path = os.path.join(ROOT, name)
  return f"ls_keras.{name}" if os.path.isdir(path) or os.path.isfile(path + ".py") else "ls_keras"


def modules():
  """(dotted name, path, is_package) of every module of ls_keras."""
  for folder, _, files in os.walk(ROOT):
    for name in sorted(files):
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      parts = os.path.relpath(path, os.path.dirname(ROOT))[: -len(".py")].split(os.sep)
      is_package = parts[-1] == "__init__"
      if is_package:
        parts = parts[:-1]
      yield ".".join(parts), path, is_package


def upward(module: str, source: str, is_package: bool = False) -> list:
  """The imports in `source` (of `module`) that point to a higher layer, as sentences."""
  return [
    f"{module} (line {line}) imports {target}: rank {rank(target)} > {rank(module)}"
    for line, target in imported(source, module, is_package)
    if rank(target) > rank(module)
  ]


def test_every_import_points_down():
  found = list(modules())
  assert len(found) > 50  # The walk found the package, not an empty folder.
  problems = []
  for module, path, is_package in found:
    with open(path) as f:
      problems += upward(module, f.read(), is_package)
  assert not problems, "\n".join(problems)


def test_every_package_has_a_rank():
  packages = {
    name for name in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, name, "__init__.py"))
  }
  assert packages == set(RANKS)


@pytest.mark.parametrize(
  "source, line, target",
  [
    ("from ls_keras import training\n", 1, "ls_keras.training"),
    ("import ls_keras.training.run\n", 1, "ls_keras.training.run"),
    ("def f():\n  from ls_keras.training import loop\n", 2, "ls_keras.training"),  # In a body.
    ("class C:\n  def f(self):\n    from .. import training\n", 3, "ls_keras.training"),
  ],
)
def test_an_upward_import_is_found(source, line, target):
  assert upward("ls_keras.calibration.report", source) == [
    f"ls_keras.calibration.report (line {line}) imports {target}: rank 3 > 2"
  ]


def test_a_downward_or_level_import_passes():
  source = (
    "from ls_keras.core import checks\nfrom ls_keras import calibration\n"
    "from . import metrics\nimport numpy\n"
  )
  assert upward("ls_keras.calibration.report", source) == []
  assert len(imported(source, "ls_keras.calibration.report", False)) == 3
