"""Composition of scenario files with ``include:``: where an entry's file is, the include chain
(cycles), and how included checks and probe settings merge with the including file's own.

A scenario may start from others:

.. code-block:: yaml

    include: [control-plane, storage, kubespan]   # built-in names, or paths such as ../mine.yaml

An entry without a ``.yaml``/``.yml`` suffix and without ``/`` is a built-in scenario's name;
anything else is a file path, relative to the directory of the file that includes it.  Included
files are read with these same rules (they may include others).  A shipped file whose name starts
with ``_`` (``scenarios/_etcd-disk.yaml``) is a fragment: includable by name (``include:
[_etcd-disk]``), never a built-in scenario (``builtin_scenarios``, ``resolve`` and ``talbench
scenarios`` leave it out), so checks that several scenarios share are written once.  The rules:

- Checks: an included check keeps the definition of the file that defines it (name, metric,
  scope, warn, fail, source, description; ``Check.line`` is its line in that file, and
  ``Composition.check_origins`` names the file).  The scenario holds the included checks in
  include order, then its own.  A check name defined in more than one place (two included files,
  or an included file and the including one) must be defined identically there: it is then kept
  once; otherwise it is an error naming both files and lines.  Limits compare as written
  (``10ms`` and ``10 ms`` differ); sources and descriptions compare with whitespace collapsed.
- Probe settings merge per setting: a setting an included file gives is taken; the including
  file's own value for a setting overrides what any included file says.  Two included files that
  give different values (as written) for the same setting are an error naming both, unless the
  including file sets that setting itself, which is how it chooses.  The merged block of every
  probe is validated again (``probe_settings``), after the included files' own validation, so a
  callback that records settings ends with the merged ones.
- The including file's ``name`` and ``description`` are the scenario's; an included file's are not
  used.  With ``include``, ``checks`` may be left out (the included checks are the scenario).
- An include cycle, an unknown built-in name and a missing or unreadable file are one-line
  ScenarioErrors naming the including file and the line of the entry.

This module is pure: it finds and reads the included files; talbench.bench.scenario parses them
(``compose``) and hands their compositions here to be merged.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talbench.bench.errors import ScenarioError
from talbench.bench.model import Check, Scenario

# What two definitions of one check must agree on (besides the name).
_COMPARED = ("metric", "scope", "warn", "fail", "source", "description")

IncludeChain = tuple[tuple[str, str], ...]
"""(resolved path, name as given) of the files including the one being read, outermost first."""


@dataclass(frozen=True)
class Composition:
    """A scenario, its ``include`` entries as written, and the ``file:line`` of every check's
    definition and of every (probe, setting) value in force."""

    scenario: Scenario
    includes: tuple[str, ...] = ()
    check_origins: Mapping[str, str] = dataclasses.field(default_factory=dict)
    setting_origins: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict)


Included = tuple[str, int, Composition]
"""An ``include`` entry as written, its line in the including file, and what its file composes to."""


def shipped_files() -> dict[str, Path]:
    """Name -> file, for every YAML file shipped in talbench.scenarios: what ``include`` may name."""
    root = importlib.resources.files("talbench.scenarios")
    return {Path(str(entry)).stem: Path(str(entry)) for entry in root.iterdir() if str(entry).endswith(".yaml")}


def names_a_file(name_or_file: str) -> bool:
    """Whether a scenario reference is a file path (a ``.yaml``/``.yml`` suffix or a ``/``), not a
    built-in name."""
    return Path(name_or_file).suffix in (".yaml", ".yml") or "/" in name_or_file


def read_included(entry: str, line: int, where: str, chain: IncludeChain) -> tuple[Path, str]:
    """The file an ``include`` entry (on ``line`` of ``where``) names, and its text; ``chain``
    ends with ``where`` itself, so an entry naming a file of the chain is a cycle."""
    if names_a_file(entry):
        path = Path(where).parent / entry
        if not path.is_file():
            raise ScenarioError(f"{where}:{line}: include {entry!r}: no such file {path}")
    else:
        shipped = shipped_files()
        if entry not in shipped:
            known = ", ".join(sorted(shipped)) or "none"
            raise ScenarioError(
                f"{where}:{line}: include {entry!r}: no built-in scenario of that name (built-in: {known})"
            )
        path = shipped[entry]
    identity = str(path.resolve())
    if any(identity == seen for seen, _ in chain):
        cycle = " -> ".join([name for _, name in chain] + [str(path)])
        raise ScenarioError(f"{where}:{line}: include cycle: {cycle}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{where}:{line}: include {entry!r}: cannot read {path}: {exc.strerror}") from exc
    return path, text


def _differences(a: Check, b: Check) -> str:
    return ", ".join(field for field in _COMPARED if getattr(a, field) != getattr(b, field))


def merge_checks(parts: Sequence[Included], own: Sequence[Check], where: str) -> tuple[list[Check], dict[str, str]]:
    """The included checks in include order, then ``where``'s own; and the ``file:line`` of each."""
    merged: dict[str, Check] = {}
    origins: dict[str, str] = {}
    for _, line, part in parts:
        for check in part.scenario.checks:
            origin = part.check_origins[check.name]
            previous = merged.get(check.name)
            if previous is None:
                merged[check.name], origins[check.name] = check, origin
            elif _differences(previous, check):
                raise ScenarioError(
                    f"{where}:{line}: check {check.name!r} is defined differently in {origins[check.name]} and {origin} "
                    f"({_differences(previous, check)} differ); a check keeps one definition"
                )
    for check in own:
        previous = merged.get(check.name)
        if previous is None:
            merged[check.name], origins[check.name] = check, f"{where}:{check.line}"
        elif _differences(previous, check):
            raise ScenarioError(
                f"{where}:{check.line}: check {check.name!r} differs from its definition in {origins[check.name]} "
                f"({_differences(previous, check)} differ); an included check keeps its file's definition"
            )
    return list(merged.values()), origins


def merge_settings(
    parts: Sequence[Included],
    own: Mapping[str, Mapping[str, Any]],
    own_origins: Mapping[tuple[str, str], str],
    own_lines: Mapping[str, int],
    where: str,
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str], dict[str, int]]:
    """Included settings, then ``where``'s ``own`` (with the ``file:line`` of each setting and the
    line of each probe's block); returns the blocks, the origin of every setting and the line (in
    ``where``) each probe's block is answered for."""
    probes: dict[str, dict[str, Any]] = {}
    origins: dict[tuple[str, str], str] = {}
    lines: dict[str, int] = {}
    conflicts: dict[tuple[str, str], str] = {}
    for _, line, part in parts:
        for probe, block in part.scenario.probes.items():
            lines.setdefault(probe, line)
            merged = probes.setdefault(probe, {})
            for key, value in block.items():
                origin = part.setting_origins[(probe, key)]
                if key not in merged:
                    merged[key], origins[(probe, key)] = value, origin
                elif merged[key] != value and (probe, key) not in conflicts:
                    conflicts[(probe, key)] = (
                        f"{where}:{line}: probe {probe!r} setting {key!r} differs between included files: "
                        f"{origins[(probe, key)]} has {merged[key]!r}, {origin} has {value!r}; "
                        f"set {probe}.{key} in {Path(where).name} to choose"
                    )
    for probe, settings in own.items():
        lines[probe] = own_lines[probe]
        merged = probes.setdefault(probe, {})
        for key, value in settings.items():
            merged[key] = value
            origins[(probe, key)] = own_origins[(probe, key)]
            conflicts.pop((probe, key), None)
    if conflicts:
        raise ScenarioError(next(iter(conflicts.values())))
    return probes, origins, lines
