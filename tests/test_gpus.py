"""GPU claiming (medical_r1/gpus.py) with real processes and real flock locks on fake GPU ids: concurrent claims never
share an id, and an id is free again once every process holding its lock is gone, however they ended."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medical_r1 import UserError, gpus
from tests.conftest import REPO

HOLDER = """
import subprocess, sys
from pathlib import Path
from medical_r1 import gpus
count, pool, lock_dir, spawn_child = sys.argv[1:]
claim = gpus.claim(int(count), pool.split(","), Path(lock_dir), wait_seconds=5, poll_seconds=0.05)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False,
                         stdout=subprocess.DEVNULL) if spawn_child == "yes" else None
print(",".join(claim.ids), child.pid if child else "", flush=True)
sys.stdin.read()
"""
"""Claims `count` ids of `pool`, (with `yes`) starts a child that inherits the lock files, prints the ids and the
child's pid, and holds the ids until its stdin closes."""


@pytest.fixture
def holders():
    """Starts holder processes; kills those still running after the test."""
    started = []

    def start(count: int, pool: str, lock_dir: Path, spawn_child: bool = False) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(count), pool, str(lock_dir),
                                    "yes" if spawn_child else "no"],
                                   cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


def ids_of(process: subprocess.Popen) -> tuple[list[str], str]:
    """The ids a holder claimed and its child's pid ("" without one), once it holds them (within 10 s)."""
    assert select.select([process.stdout], [], [], 10)[0], "the holder printed nothing in 10 s"
    line = process.stdout.readline()
    assert line, f"the holder exited with {process.wait(timeout=10)} before claiming"
    ids, _, child_pid = line.strip().partition(" ")
    return ids.split(","), child_pid


def test_concurrent_claims_never_share_an_id(holders, tmp_path):
    first, second = holders(1, "7,8", tmp_path), holders(1, "7,8", tmp_path)
    first_ids, second_ids = ids_of(first)[0], ids_of(second)[0]
    assert sorted(first_ids + second_ids) == ["7", "8"]

    with pytest.raises(UserError, match=r"asked for 1 of the GPUs 7,8 .* still held: 7 by pid \d+ in .*, 8 by pid \d+"):
        gpus.claim(1, ["7", "8"], tmp_path, wait_seconds=0.2, poll_seconds=0.05)

    first.stdin.close()
    first.wait(timeout=10)
    assert gpus.claim(1, ["7", "8"], tmp_path, wait_seconds=5, poll_seconds=0.05).ids == first_ids


def test_simultaneous_starts_get_distinct_ids(holders, tmp_path):
    processes = [holders(1, "6,7,8,9", tmp_path) for _ in range(4)]
    claimed = [ids_of(process)[0] for process in processes]
    assert sorted(gpu for ids in claimed for gpu in ids) == ["6", "7", "8", "9"]


def test_a_killed_holder_frees_its_id(holders, tmp_path):
    process = holders(1, "7", tmp_path)
    assert ids_of(process)[0] == ["7"]
    process.kill()
    process.wait(timeout=10)
    assert gpus.claim(1, ["7"], tmp_path, wait_seconds=2, poll_seconds=0.05).ids == ["7"]


def test_a_child_keeps_the_id_after_its_parent_is_killed(holders, tmp_path):
    parent = holders(1, "7", tmp_path, spawn_child=True)
    ids, child_pid = ids_of(parent)
    try:
        assert ids == ["7"]
        parent.kill()
        parent.wait(timeout=10)
        with pytest.raises(UserError, match="still held"):
            gpus.claim(1, ["7"], tmp_path, wait_seconds=0.2, poll_seconds=0.05)
    finally:
        os.kill(int(child_pid), signal.SIGKILL)  # not our child (no wait): the claim below polls until it is gone
    assert gpus.claim(1, ["7"], tmp_path, wait_seconds=5, poll_seconds=0.05).ids == ["7"]


def test_claimed_sets_and_restores_cuda_visible_devices(tmp_path, capsys):
    environ = {gpus.POOL_ENV: "7,8", gpus.LOCKS_ENV: str(tmp_path), gpus.WAIT_ENV: "1", "CUDA_VISIBLE_DEVICES": "5"}
    with gpus.claimed(1, environ) as claim:
        assert claim.ids == ["7"] and environ["CUDA_VISIBLE_DEVICES"] == "7"
        with pytest.raises(UserError):
            gpus.claim(2, ["7", "8"], tmp_path, wait_seconds=0)
    assert environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert "gpus: claimed 7 (pool 7,8)" in capsys.readouterr().err

    del environ["CUDA_VISIBLE_DEVICES"]
    with pytest.raises(RuntimeError), gpus.claimed(2, environ):
        assert environ["CUDA_VISIBLE_DEVICES"] == "7,8"
        raise RuntimeError("the stage failed")
    assert "CUDA_VISIBLE_DEVICES" not in environ
    assert gpus.claim(2, ["7", "8"], tmp_path, wait_seconds=0).ids == ["7", "8"]


@pytest.mark.parametrize("pool", [None, "", " "])
def test_without_a_pool_claimed_changes_nothing(pool):
    environ = {"CUDA_VISIBLE_DEVICES": "3"} | ({gpus.POOL_ENV: pool} if pool is not None else {})
    before = dict(environ)
    with gpus.claimed(2, environ) as claim:
        assert claim is None and environ == before
    assert environ == before


@pytest.mark.parametrize("bad", [
    lambda lock_dir: gpus.claim(0, ["7", "8"], lock_dir, wait_seconds=0),
    lambda lock_dir: gpus.claim(3, ["7", "8"], lock_dir, wait_seconds=0),
    lambda lock_dir: gpus.claim(1, ["7", "7"], lock_dir, wait_seconds=0),
    lambda lock_dir: gpus.claim(1, ["7", " "], lock_dir, wait_seconds=0),
    lambda lock_dir: gpus.parse_pool("7,,8"),
    lambda lock_dir: gpus.parse_pool("7,7"),
    lambda lock_dir: gpus.claimed(1, {gpus.POOL_ENV: "7,8", gpus.LOCKS_ENV: str(lock_dir), gpus.WAIT_ENV: "soon"})
    .__enter__(),
], ids=["count 0", "count above the pool", "duplicate id", "blank id", "empty entry", "repeated entry", "bad wait"])
def test_bad_input_is_refused_in_one_sentence_and_locks_nothing(bad, tmp_path):
    with pytest.raises(UserError) as refused:
        bad(tmp_path)
    message = str(refused.value)
    assert message and ". " not in message and "\n" not in message
    assert gpus.claim(2, ["7", "8"], tmp_path, wait_seconds=0).ids == ["7", "8"]
