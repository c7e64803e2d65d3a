"""install_requires covers every third-party package the library imports (CI's clean venv proves the rest)."""
import ast
import importlib.metadata
import os
import re
import sys

from score_jax.testing.smoke import REPO

# Imported only by the test helpers (score_jax/testing), which the test extras install.
TEST_ONLY = {"torch", "portpicker", "pytest"}


def install_requires() -> set[str]:
  tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
  call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
  reqs = next(k.value for k in call.keywords if k.arg == "install_requires")
  return {normalize(re.split(r"[<>=!~\[ ;]", ast.literal_eval(e))[0]) for e in reqs.elts}


def normalize(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules() -> dict[str, str]:
  """{top-level module: a file importing it} over score_jax/, outside score_jax/testing."""
  out = {}
  for root, _, files in os.walk(os.path.join(REPO, "score_jax")):
    if os.sep + "testing" in root:
      continue
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(root, f)
        for n in ast.walk(ast.parse(open(path).read())):
          names = [a.name for a in n.names] if isinstance(n, ast.Import) else (
              [n.module] if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 else [])
          for name in names:
            out.setdefault(name.split(".")[0], path)
  return {m: p for m, p in out.items() if m not in sys.stdlib_module_names and m != "score_jax"}


def test_every_imported_package_is_in_install_requires():
  reqs = install_requires()
  dists = importlib.metadata.packages_distributions()
  missing = {}
  for module, path in imported_top_level_modules().items():
    names = {normalize(d) for d in dists.get(module, [module])}
    if module not in TEST_ONLY and not names & reqs:
      missing[module] = os.path.relpath(path, REPO)
  assert not missing, f"imported but not in setup.py install_requires: {missing}"


def test_the_chat_template_dependency_is_declared():
  """transformers renders chat templates with jinja2 but does not require it: we must."""
  assert "jinja2" in install_requires()
  transformers_reqs = importlib.metadata.requires("transformers") or []
  assert not [r for r in transformers_reqs if r.lower().startswith("jinja2") and "extra" not in r]
