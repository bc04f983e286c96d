import re

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_the_params_reference_is_generated_from_the_config_and_its_defaults():
    from scripts.params_reference import REFERENCE, reference

    assert REFERENCE.read_text() == reference(), "docs/params.md is stale: run python scripts/params_reference.py"


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^(bash scripts/setup\.sh .*)$", README, flags=re.M)[:2]
    assert commands[0].endswith("dvc repro") and commands[1].endswith("pytest -q tests")
    assert commands[1] in (REPO / ".ci/run").read_text()
