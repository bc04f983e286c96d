"""Every patch of third-party code is written for the pinned version of its package, refuses another one, and can
be undone."""

import dataclasses
import re

import pytest

from medical_r1.model import patches, trl_cpu
from tests.conftest import REPO

PATCHES = [value for value in vars(patches).values() if isinstance(value, patches.Patch)]


def pins() -> dict[str, str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return dict(m.groups() for line in lines if (m := re.match(r"([\w-]+)==([\w.]+)", line)))


@pytest.mark.parametrize("patch", PATCHES, ids=[p.replaces[0] for p in PATCHES])
def test_each_patch_is_written_for_the_pinned_version(patch):
    assert pins()[patch.package] == patch.written_for
    assert patch.why and all(":" in target for target in patch.replaces)


def test_a_patch_goes_on_once_and_comes_off():
    from trl.trainer import utils

    before = utils._ChunkedLogProbFunction
    undo = patches.apply(patches.TRL_CPU_LOSS, trl_cpu._TorchLogProbs)
    assert utils._ChunkedLogProbFunction is trl_cpu._TorchLogProbs
    assert patches.apply(patches.TRL_CPU_LOSS, object()) is undo  # already on: nothing changes
    assert utils._ChunkedLogProbFunction is trl_cpu._TorchLogProbs
    undo()
    assert utils._ChunkedLogProbFunction is before


def test_a_patch_refuses_another_version_of_its_package():
    other = dataclasses.replace(patches.TRL_CPU_LOSS, written_for="0.1.0")
    with pytest.raises(patches.PatchError, match=r"written for trl 0\.1\.0, and this machine has 1\.15\.0"):
        patches.apply(other, trl_cpu._TorchLogProbs)
