"""The import graph of hcdp_model, hcdp_ros and the trainer has no cycle (issue 15).

Every import counts, function-level and TYPE_CHECKING ones included, and
importlib.import_module("...") with a literal name.
"""
from __future__ import annotations

import ast
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[2]


def module_names(package_dir: Path, package: str | None = None) -> dict[str, Path]:
    """Map dotted module name -> file, for every .py under `package_dir`.

    Packages count as their __init__; `package`: the name it is installed as (default: the folder's
    name).
    """
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (package or package_dir.name, *path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Return the modules of `known` that `module` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # `import a.b.c` needs a.b.c; report the deepest known module on the dotted path.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != module:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node.level, node.module)
            for alias in node.names:
                child = f"{source}.{alias.name}"
                add(child if child in known else source)
        elif (isinstance(node, ast.Call)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            add(node.args[0].value)
    return found


def import_graph(package_dir: Path, package: str | None = None) -> dict[str, set[str]]:
    names = module_names(package_dir, package)
    return {m: imports_of(m, p, set(names)) for m, p in names.items()}


# The installed packages and the folders they come from (setup.py's package_dir).
PACKAGES = {"hcdp_model": "hcdp_model", "hcdp_ros": "hcdp_ros", "hcdp_training": "training"}


def repository_graph() -> dict[str, set[str]]:
    """One graph over every module of the three packages, so that cycles across them count."""
    names: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        names.update(module_names(ROOT / folder, package))
    return {m: imports_of(m, p, set(names)) for m, p in names.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One example cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_example_cycle(graph, set(c)) for c in components]


def _example_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """Return a shortest path from the component's first module back to itself (breadth first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in component {sorted(component)}")


def test_hcdp_model_has_no_import_cycle():
    graph = import_graph(ROOT / "hcdp_model")
    assert "hcdp_model.predictor" in graph and graph["hcdp_model.backends.build"], (
        "graph not built")
    found = cycles(graph)
    assert not found, "expected no import cycle in hcdp_model, found: " + "; ".join(
        " -> ".join(c) for c in found)


def test_the_repository_has_no_import_cycle_across_its_packages():
    graph = repository_graph()
    assert {"hcdp_ros.node", "hcdp_training.stages", "hcdp_training.synth.walkcycle"} <= set(graph)
    assert "hcdp_model.predictor" in graph["hcdp_ros.bag"], "cross-package edges not found"
    found = cycles(graph)
    assert not found, "expected no import cycle in hcdp_model, hcdp_ros, hcdp_training, " + (
        "found: " + "; ".join(" -> ".join(c) for c in found))


USERS = re.compile(r"\bhcdp_(?:ros|training)\b")


def lines_matching(package_dir: Path, pattern: re.Pattern) -> list[str]:
    """Every line under `package_dir` where `pattern` occurs: in an import, a string, a comment."""
    return [f"{path.relative_to(package_dir.parent)}:{number}: {line.strip()}"
            for path in sorted(package_dir.rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)]


def names_of_users(package_dir: Path) -> list[str]:
    """Return the lines under `package_dir` that name the hcdp_ros or hcdp_training package."""
    return lines_matching(package_dir, USERS)


def test_hcdp_model_names_no_module_of_its_users_not_even_as_a_string():
    found = names_of_users(ROOT / "hcdp_model")
    assert not found, "expected hcdp_model to name no hcdp_ros/hcdp_training module, found:\n" + (
        "\n".join(found))


def test_the_name_check_sees_strings_and_comments(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text('MODULE = "hcdp_training.train"\n# see hcdp_ros.bag\n'
                                           'OK = "hcdp_rosbag hcdp_model"\n')
    assert names_of_users(tmp_path / "pkg") == ['pkg/a.py:1: MODULE = "hcdp_training.train"',
                                                "pkg/a.py:2: # see hcdp_ros.bag"]


def test_the_check_finds_function_level_and_type_checking_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from . import a\n")
    (pkg / "d.py").write_text("import importlib\nM = importlib.import_module('pkg.e')\n")
    (pkg / "e.py").write_text("import pkg.d\n")
    (pkg / "f.py").write_text("from .a import x\n")  # depends on the cycle, is not part of it
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"} and graph["pkg.f"] == {"pkg.a"}
    assert sorted(cycles(graph)) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"],
                                     ["pkg.d", "pkg.e", "pkg.d"]]


def test_hcdp_model_reads_no_ros_message():
    # one decoder for sensor_msgs images (hcdp_ros.conversions); the model package reads no bag
    found = lines_matching(ROOT / "hcdp_model", re.compile(r"\brosbags\b|\bsensor_msgs\b"))
    assert not found, "expected hcdp_model to read no ROS message, found:\n" + "\n".join(found)


def test_the_bundled_model_is_looked_up_under_the_package_that_installed_this_one():
    import xml.etree.ElementTree as ElementTree

    from hcdp_model.predictor import ament_package

    name = ElementTree.parse(ROOT / "package.xml").getroot().findtext("name")
    assert ament_package() == name


def test_bag_ground_truth_goes_through_the_one_sensor_msgs_decoder():
    from hcdp_ros import bag, conversions

    assert bag.decode_float_image is conversions.decode_float_image
