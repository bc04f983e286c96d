"""dvc.yaml, bench/dvc.yaml and export/dvc.yaml cannot drift from the code: each stage's code deps are exactly the modules its
command imports (transitively, within stages/ and medical_r1/); every pipeline stage can be run-cached."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from medical_r1.config import Params
from medical_r1.model.backends import REGISTRY
from tests.conftest import COMMANDS, REPO


def module_file(name: str) -> Path:
    path = REPO / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


PACKAGES = ("stages", "medical_r1", "scripts")
"""Our code: the entry points, the library, the scripts."""
PICKED_BY_NAME = {"medical_r1.data.tasks", "medical_r1.model.backends"}
"""Packages whose get(name) imports one of their modules at run time (data.task, train.backend)."""


def without_type_checking(tree: ast.Module) -> ast.Module:
    """The module without its `if TYPE_CHECKING:` blocks (imports for annotations only: nothing loads them)."""
    for node in ast.walk(tree):
        for field in ("body", "orelse"):
            statements = getattr(node, field, None)
            if isinstance(statements, list):
                setattr(node, field, [s for s in statements if not (isinstance(s, ast.If) and isinstance(s.test, ast.Name)
                                                                    and s.test.id == "TYPE_CHECKING")])
    return tree


def direct_imports(name: str) -> set[str]:
    """Modules of our packages that `name` imports, its packages included; a call of `tasks.get(...)` or
    `backends.get(...)` counts as importing every module of that package (it picks one at run time)."""
    found, local_names = set(), {}
    for node in ast.walk(without_type_checking(ast.parse(module_file(name).read_text()))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found.add(node.module)
            for alias in node.names:
                if module_file(f"{node.module}.{alias.name}").is_file():
                    found.add(f"{node.module}.{alias.name}")
                    local_names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
    for node in ast.walk(ast.parse(module_file(name).read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name) and local_names.get(node.func.value.id) in PICKED_BY_NAME):
            package = local_names[node.func.value.id]
            found |= {f"{package}.{p.stem}" for p in module_file(package).parent.glob("*.py") if p.stem != "__init__"}
    return found | {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}


def import_closure(name: str) -> set[str]:
    """Files (relative to the repo) of every module of ours that `python -m <name>` loads."""
    seen, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += direct_imports(module)
    return {str(module_file(m).relative_to(REPO)) for m in seen | {"stages", "medical_r1"} if module_file(m).is_file()}


def stages_of(dvc_yaml: Path):
    """(name, command module, deps, definition) of every stage, matrix/foreach templates included."""
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        body = stage.get("do", stage)
        command = re.search(r"python (?:-m ([\w.]+)|(scripts/\w+)\.py)", body["cmd"])
        module = command.group(1) or command.group(2).replace("/", ".")
        yield name, module, body.get("deps", []), body


PIPELINES = [REPO / "dvc.yaml", REPO / "bench/dvc.yaml", REPO / "export/dvc.yaml"]


@pytest.mark.parametrize("dvc_yaml", PIPELINES, ids=["dvc.yaml", "bench/dvc.yaml", "export/dvc.yaml"])
def test_code_deps_are_exactly_the_import_closure(dvc_yaml):
    for name, module, deps, _ in stages_of(dvc_yaml):
        listed = {d for d in deps if d.startswith(PACKAGES)}
        closure = import_closure(module)
        assert listed == closure, (f"{dvc_yaml.name}:{name}: missing {sorted(closure - listed)}, "
                                   f"stale {sorted(listed - closure)}")


def test_every_stage_of_the_pipeline_can_be_run_cached():
    """DVC run-caches a stage only when no output is persisted and every uncached output is one of the stage's
    metrics or plots (dvc/stage/__init__.py, Stage.run). Metrics and plots are declared once, at their stage.
    (bench/dvc.yaml is left out: a benchmark must measure again, not restore an old timing.)"""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert not {"metrics", "plots"} & set(pipeline), "declare metrics and plots at their stage only"
    for name, _, _, body in stages_of(REPO / "dvc.yaml"):
        if name == "check":  # its one output is persisted, so a refusal loses nothing (stages/check.py); a second
            assert body["outs"] == [{"reports/check.json": {"cache": False, "persist": True}}]
            continue
        assert body.get("outs") or body.get("metrics"), f"{name} has no outputs: DVC would never run-cache it"
        for out in body.get("outs", []):
            settings = next(iter(out.values())) if isinstance(out, dict) else {}
            assert settings.get("cache", True) and not settings.get("persist"), \
                f"{name}: {out} is uncached or persisted, which keeps the stage out of the run-cache"


def test_tests_run_the_stages_as_dvc_yaml_does():
    commands = {name: body["cmd"] for name, _, _, body in stages_of(REPO / "dvc.yaml")}
    assert list(commands) == list(COMMANDS)
    assert commands == {name: "python -m " + " ".join(args) for name, args in COMMANDS.items()}


def test_the_closure_follows_dynamic_imports():
    """tasks.get() imports a task module by name: every task is a dependency of what calls it; only the packages
    in PICKED_BY_NAME import by name."""
    dynamic = {str(path.relative_to(REPO)) for path in REPO.glob("medical_r1/**/*.py")
               if "import_module(" in path.read_text() and path.name != "patches.py"}
    assert dynamic == {str(module_file(package).relative_to(REPO)) for package in PICKED_BY_NAME}
    closure = import_closure("stages.prepare")
    tasks = Path("medical_r1/data/tasks")
    assert {str(tasks / "cmeee_ner.py"), str(tasks / "mcq.py"), str(tasks / "medical_cot.py")} <= closure
    implementations = {f"medical_r1/model/backends/{module}.py" for module in REGISTRY.values()}
    assert implementations <= import_closure("stages.train")
    assert not implementations & import_closure("stages.evaluate")  # evaluation loads with plain transformers


def params_read_by(module: str) -> set[str]:
    """The params a stage's main() hands on, as dvc.yaml names them: `params.train` -> train, `params.data.task` ->
    data.task (main() is the only reader of the loaded params; the functions it calls get sections or values)."""
    tree = ast.parse(module_file(module).read_text())
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    inner = {id(node.value) for node in ast.walk(main) if isinstance(node, ast.Attribute)}
    chains = set()
    for node in ast.walk(main):
        if id(node) in inner:  # `params.data` inside `params.data.task`: only the whole chain is read
            continue
        chain = []
        while isinstance(node, ast.Attribute):
            chain.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "params" and chain:
            chains.add(".".join(chain))
    return {c for c in chains if not any(c.startswith(whole + ".") for whole in chains)}  # a section read whole


def test_each_stage_lists_exactly_the_params_it_reads():
    for name, module, _, body in stages_of(REPO / "dvc.yaml"):
        every_key = {f.name for f in dataclasses.fields(Params)}  # check validates them all: config.load()
        assert set(body["params"]) == (every_key if name == "check" else params_read_by(module)), name
