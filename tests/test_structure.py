"""The codebase's shape: no import cycles, no side effects on import, a README for users."""
import ast
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "sparse_jax")


def _modules() -> dict:
  """{dotted module name: path} of every module of the package."""
  found = {}
  for folder, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        found[dotted.removesuffix(".__init__")] = path
  return found


def import_graph() -> dict:
  """{module: modules of the package it imports}, at module level or inside functions alike."""
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
    deps = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        deps.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for a in node.names:  # `from sparse_jax.codec import sjx` imports a module
          full = f"{node.module}.{a.name}"
          deps.add(full if full in modules else node.module)
    graph[name] = {d for d in deps if d in modules and d != name}
  return graph


def find_cycle(graph: dict) -> list | None:
  """One import cycle as a list of modules (first == last), or None."""
  state = {}  # 1: on the current path, 2: done

  def visit(node, path):
    state[node] = 1
    for dep in sorted(graph[node]):
      if state.get(dep) == 1:
        return path[path.index(dep):] + [dep]
      if dep not in state:
        found = visit(dep, path + [dep])
        if found:
          return found
    state[node] = 2
    return None

  for start in sorted(graph):
    if start not in state:
      found = visit(start, [start])
      if found:
        return found
  return None


def test_find_cycle_finds_one():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  assert "sparse_jax.codec.encode" in graph and "sparse_jax.cli.commands" in graph
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
  # The codec layer knows nothing of its consumers; the encoder never imports refinement.
  codec = [m for m in graph if m.startswith("sparse_jax.codec")]
  for module in codec:
    assert not any(d.startswith(("sparse_jax.report", "sparse_jax.cli", "sparse_jax.api"))
                   for d in graph[module]), (module, graph[module])
  assert "sparse_jax.codec.refine" not in graph["sparse_jax.codec.encode"]
  assert graph["sparse_jax.codec.refine"] <= {
      "sparse_jax.codec.sjx", "sparse_jax.codec.gains", "sparse_jax.codec.runtime",
      "sparse_jax.audio_io", "sparse_jax.signal", "sparse_jax.progress", "sparse_jax.errors",
      "sparse_jax.metrics"}, graph["sparse_jax.codec.refine"]


def test_importing_the_package_changes_no_environment_variable():
  # JAX sets TF_CPP_MIN_LOG_LEVEL on its own import: the baseline is taken after it.
  code = ("import os, jax; before = dict(os.environ)\n"
          "import sparse_jax, sparse_jax.api, sparse_jax.codec.runtime\n"
          "print(sorted(k for k in set(before) | set(os.environ)"
          " if before.get(k) != os.environ.get(k)))\n")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        check=False)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == "[]", done.stdout


def test_the_readme_is_for_users_and_the_docs_exist():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert len(readme.splitlines()) <= 200
  for doc in ("model", "training", "cli", "format", "model_card", "results", "collapse",
              "development"):
    assert f"docs/{doc}.md" in readme and os.path.exists(os.path.join(ROOT, "docs", f"{doc}.md"))
  # Words of the project's own history, not of a user's.
  for word in (r"\bthis session\b", r"\blease\b"):
    assert not re.search(word, readme.lower()), word
