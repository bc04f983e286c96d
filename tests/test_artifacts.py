"""Each artifact is declared once (medical_r1/artifacts.py): dvc.yaml and export/dvc.yaml list exactly the files that
declaration says each stage writes and reads, no module spells an artifact's path itself, and each stage's docstring
names what it reads and writes."""

import ast
from pathlib import Path

import pytest

from medical_r1 import artifacts
from tests.conftest import REPO
from tests.test_deps import PACKAGES, stages_of

PIPELINES = [REPO / "dvc.yaml", REPO / "export/dvc.yaml"]
KIND_OF_SECTION = {"metrics": "metric", "plots": "plot"}


def declared_outputs(body: dict) -> dict[str, str]:
    """path -> kind, as the stage's outs, metrics and plots declare them."""
    found = {}
    for section in ("outs", "metrics", "plots"):
        for entry in body.get(section, []):
            path, settings = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            cached = (settings or {}).get("cache", True)
            found[path] = KIND_OF_SECTION.get(section) or ("out" if cached else "uncached")
    return found


def stages() -> list[tuple[str, dict]]:
    return [(name, body) for pipeline in PIPELINES for name, _, _, body in stages_of(pipeline)]


@pytest.mark.parametrize("name,body", stages(), ids=[name for name, _ in stages()])
def test_dvc_yaml_declares_what_artifacts_declares(name, body):
    assert declared_outputs(body) == {str(a.path): a.kind for a in artifacts.written_by(name)}
    data_deps = {d for d in body.get("deps", []) if not d.startswith(PACKAGES) and not d.startswith("models/configs")}
    assert data_deps == {str(a.path) for a in artifacts.read_by(name)}


def test_every_artifact_has_a_stage_and_every_reader_exists():
    names = {name for name, _ in stages()}
    for artifact in artifacts.ALL:
        assert artifact.writer in names | {None}, artifact
        assert set(artifact.readers) <= names, artifact
    declared = {name for name, value in vars(artifacts).items() if isinstance(value, artifacts.Artifact)}
    declared |= {f"{name}[{key}]" for name, value in vars(artifacts).items() if isinstance(value, dict)
                 for key, item in value.items() if isinstance(item, artifacts.Artifact)}
    assert len(artifacts.ALL) == len(declared) == len({a.path for a in artifacts.ALL})


def code_strings(path: Path) -> set[str]:
    """String constants in a module's code, its docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


def test_no_module_spells_an_artifact_path():
    """A path changes in artifacts.py alone (bundled samples, inside data/sample, belong to their task)."""
    paths = [str(a.path) for a in artifacts.ALL if a is not artifacts.SAMPLE and a.writer is not None]
    for module in [*REPO.glob("stages/*.py"), *REPO.glob("medical_r1/**/*.py")]:
        if module.name == "artifacts.py":
            continue
        spelled = [s for s in code_strings(module) for p in paths if s == p or s.startswith(p + "/")]
        assert not spelled, f"{module.relative_to(REPO)} spells {spelled}: use medical_r1.artifacts"


@pytest.mark.parametrize("stage", ["prepare", "train", "rl", "evaluate", "report", "export"])
def test_each_stage_docstring_names_what_it_reads_and_writes(stage):
    names = {n for n, body in stages() if body["cmd"].split()[2] == f"stages.{stage}"}
    doc = ast.get_docstring(ast.parse((REPO / f"stages/{stage}.py").read_text()))
    for artifact in {a for n in names for a in artifacts.written_by(n) + artifacts.read_by(n)}:
        either_model = [str(artifact.path).replace(f"/{model}/", "/<model>/") for model in artifacts.MODELS]
        assert any(path in doc for path in (str(artifact.path), *either_model)), \
            f"stages/{stage}.py's docstring does not name {artifact.path}"
