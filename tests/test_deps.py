"""dvc.yaml and bench/dvc.yaml cannot drift from the code: each stage's code deps are exactly the modules its
command imports (transitively, within stages/ and medical_r1/); every pipeline stage can be run-cached."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import COMMANDS, REPO


def module_file(name: str) -> Path:
    path = REPO / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def direct_imports(name: str) -> set[str]:
    """Modules of our packages that `name` imports, its packages included; `importlib.import_module(f"a.b.{x}")`
    counts as importing every module of a.b (tasks.get and backends.get pick one at run time)."""
    found = set()
    for node in ast.walk(ast.parse(module_file(name).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}").is_file()}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module"
              and node.args and isinstance(node.args[0], ast.JoinedStr)):
            package = node.args[0].values[0].value.rstrip(".")
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
    return {str(module_file(m).relative_to(REPO)) for m in seen | {"stages", "medical_r1"}}


def stages_of(dvc_yaml: Path):
    """(name, command module, deps, definition) of every stage, matrix/foreach templates included."""
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        body = stage.get("do", stage)
        module = re.search(r"python -m ([\w.]+)", body["cmd"]).group(1)
        yield name, module, body.get("deps", []), body


PACKAGES = ("stages", "medical_r1")
"""Our code: the entry points and the library."""

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
    """tasks.get() imports a task module by name: every task is a dependency of what calls it."""
    closure = import_closure("stages.prepare")
    tasks = Path("medical_r1/data/tasks")
    assert {str(tasks / "cmeee_ner.py"), str(tasks / "mcq.py"), str(tasks / "medical_cot.py")} <= closure
    assert "medical_r1/model/backends/unsloth.py" in import_closure("stages.train")
    assert not any(path.startswith("medical_r1/model/backends") for path in import_closure("stages.evaluate"))


def params_read_by(module: str) -> set[str]:
    """The params a stage's main() hands on, as dvc.yaml names them: `params.train` -> train, `params.data.task` ->
    data.task (main() is the only reader of the loaded params; the functions it calls get sections or values)."""
    tree = ast.parse(module_file(module).read_text())
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    chains = set()
    for node in ast.walk(main):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "params" and chain:
            chains.add(".".join(chain))
    return {c for c in chains if not any(other.startswith(c + ".") for other in chains)}


def test_each_stage_lists_exactly_the_params_it_reads():
    for name, module, _, body in stages_of(REPO / "dvc.yaml"):
        assert set(body["params"]) == params_read_by(module), name
