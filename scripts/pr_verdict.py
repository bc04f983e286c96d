"""The review's verdict, from `dvc status --json` of dvc.yaml's stages and the committed dvc.lock: which stages are
stale and why (a changed code dep, a changed param, a changed command, a result that differs from the lock), which
are downstream of them, and what is only missing from this checkout (DVC-cached, never pulled: not staleness).
Plain values in, plain values out (scripts/pr_review.py runs DVC and writes the comment)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SHOWN = 8
"""Reasons named per stale stage; the rest are counted."""
MISSING = {"deleted", "not in cache"}
"""How `dvc status` reports a DVC-cached output that this checkout does not have."""


@dataclass
class Pipeline:
    """dvc.yaml's stages: what each reads and writes, and which outputs live in the DVC cache."""

    deps: dict[str, list[str]]
    outs: dict[str, list[str]]
    cached: set[str] = field(default_factory=set)
    persisted: set[str] = field(default_factory=set)
    """Outputs DVC leaves in place while their stage runs: here only check's record, the same bytes every time, so
    its stage running again changes nothing downstream."""

    @classmethod
    def read(cls, path: Path) -> Pipeline:
        pipeline = cls({}, {})
        for name, stage in yaml.safe_load(path.read_text())["stages"].items():
            pipeline.deps[name] = list(stage.get("deps", []))
            pipeline.outs[name] = []
            for kind in ("outs", "metrics", "plots"):
                for entry in stage.get(kind, []):
                    out, options = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                    pipeline.outs[name].append(out)
                    if (options or {}).get("cache", True):
                        pipeline.cached.add(out)
                    if (options or {}).get("persist", False):
                        pipeline.persisted.add(out)
        return pipeline

    def producer(self, path: str) -> str | None:
        """The stage whose output is `path` or holds it."""
        return next((stage for stage, outs in self.outs.items() if any(within(path, out) for out in outs)), None)

    def cached_output(self, path: str) -> bool:
        """Whether `path` is, or lies in, a stage's DVC-cached output."""
        return any(within(path, out) for out in self.cached)

    def downstream(self, stages: set[str]) -> list[str]:
        """The stages that read, directly or through others, what `stages` write (in dvc.yaml's order)."""
        feeds = {stage: {self.producer(dep) for dep in deps if dep not in self.persisted}
                 for stage, deps in self.deps.items()}
        reached = set(stages)
        changed = True
        while changed:
            changed = False
            for stage, producers in feeds.items():
                if stage not in reached and producers & reached:
                    reached.add(stage)
                    changed = True
        return [stage for stage in self.deps if stage in reached - stages]


def within(path: str, out: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


@dataclass
class Verdict:
    """What `dvc status` says of the committed results."""

    stale: dict[str, list[str]]
    """Stage -> why its committed results do not belong to this change."""
    downstream: list[str]
    """Stages that read what a stale stage writes."""
    missing: list[str]
    """DVC-cached outputs this checkout does not have (never pulled): not staleness."""
    unchecked: list[str] = field(default_factory=list)
    """Absent dependencies inside another stage's absent directory output: checked only once pulled."""

    @property
    def up_to_date(self) -> bool:
        return not self.stale


def judge(status: dict, pipeline: Pipeline, params_changes: dict[str, list[str]], lock: dict) -> Verdict:
    """Sort `dvc status --json` into staleness and outputs that are merely not here. A dependency is stale when
    it changed; one that is a DVC-cached output this checkout lacks is stale when dvc.lock records another hash
    for it than its producer wrote (unchecked when it lies inside a directory output). An output is stale when
    it differs from dvc.lock or, kept in git, is gone."""
    written = locked_outs(lock)
    stale: dict[str, list[str]] = {}
    missing: set[str] = set()
    unchecked: set[str] = set()
    for stage, changes in status.items():
        reasons = []
        for change in changes:
            if change == "always changed":
                continue
            if isinstance(change, str):
                reasons.append(change)
                continue
            for path, state in change.get("changed deps", {}).items():
                if isinstance(state, dict):  # params.yaml: {section or key: state}
                    reasons.extend(params_changes.get(stage) or [f"params {', '.join(sorted(state))} changed"])
                elif state == "deleted" and pipeline.cached_output(path):
                    if path not in written:
                        unchecked.add(path)
                    elif locked_dep(lock, stage, path) != written[path]:
                        reasons.append(f"{path} is not what {pipeline.producer(path)} wrote (dvc.lock)")
                else:
                    reasons.append(f"{path} {state}")
            for path, state in change.get("changed outs", {}).items():
                if state in MISSING and path in pipeline.cached:
                    missing.add(path)
                else:
                    reasons.append(f"{path} {'differs from dvc.lock' if state == 'modified' else state}")
        if reasons:
            stale[stage] = reasons if len(reasons) <= SHOWN else [*reasons[:SHOWN], f"and {len(reasons) - SHOWN} more"]
    return Verdict(stale, pipeline.downstream(set(stale)), sorted(missing), sorted(unchecked))


def locked_outs(lock: dict) -> dict[str, str | None]:
    """Every output dvc.lock records -> its hash."""
    return {out["path"]: out.get("md5") for entry in lock.get("stages", {}).values() for out in entry.get("outs", [])}


def locked_dep(lock: dict, stage: str, path: str) -> str | None:
    """The hash dvc.lock records for `stage`'s dependency `path`."""
    deps = lock.get("stages", {}).get(stage, {}).get("deps", [])
    return next((dep.get("md5") for dep in deps if dep["path"] == path), None)


def params_changes(lock: dict, params: dict, pipeline: Pipeline) -> dict[str, list[str]]:
    """Stage -> the params it reads whose value differs from dvc.lock's, as `key: old -> new`."""
    current = flatten(params)
    changes = {}
    for stage, entry in lock.get("stages", {}).items():
        if stage not in pipeline.deps:
            continue
        locked_params = entry.get("params", {}).get("params.yaml", {})
        locked = flatten(locked_params)
        read = {key for key in current if any(key == name or key.startswith(name + ".") for name in locked_params)}
        lines = [f"{key}: {json.dumps(locked.get(key))} -> {json.dumps(current.get(key))}"
                 for key in sorted(set(locked) | read) if locked.get(key) != current.get(key)]
        if lines:
            changes[stage] = lines
    return changes


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
