import dataclasses
import re

from stages import config
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def leaf_keys(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaf_keys(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_params_reference_covers_every_key():
    first_cells = re.findall(r"^\| (`[^|]+) \|", README, flags=re.M)
    documented = {key for cell in first_cells for key in re.findall(r"`([\w.*]+)`", cell)}
    missing = [key for key in leaf_keys(config.Params())
               if key not in documented and key.rsplit(".", 1)[0] + ".*" not in documented]
    assert missing == []


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^(bash scripts/setup\.sh .*)$", README, flags=re.M)[:2]
    assert commands[0].endswith("dvc repro") and commands[1].endswith("pytest -q tests")
    assert commands[1] in (REPO / ".ci/run").read_text()
