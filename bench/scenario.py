"""Scenario files: YAML naming checks (metric, scope, warn/fail limits, source) and per-probe
settings.  Parsing is strict and every error is one line naming the file and line.

Composition.  A scenario may start from others::

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

This module is pure: it reads files but knows no driver; metrics and a settings-validation
callback are passed in.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from talbench.bench.errors import ScenarioError, UsageError
from talbench.bench.metric import Metric
from talbench.bench.model import SCOPE_KIND, Check, Scenario, Scope
from talbench.bench.units import Quantity, UnitError, parse_quantity

SCHEMA_VERSION = 1
_CHECK_KEYS = {"name", "metric", "scope", "warn", "fail", "source", "description"}
_TOP_KEYS = {"schema", "name", "description", "include", "probes", "checks"}
_COMPARED = ("metric", "scope", "warn", "fail", "source", "description")

ProbeSettings = Callable[[str, Mapping[str, Any]], Any]


class _Lines(dict[Any, Any]):
    """A mapping that remembers the line (1-based) where it and each of its keys stand."""

    line: int = 0
    key_lines: dict[str, int]


class _Items(list[Any]):
    """A sequence that remembers the line (1-based) of each of its items."""

    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Lines:
        mapping = _Lines(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        return mapping

    def construct_items(self, node: yaml.SequenceNode) -> _Items:
        items = _Items(self.construct_sequence(node))
        items.item_lines = [item.start_mark.line + 1 for item in node.value]
        return items


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_items)


@dataclass(frozen=True)
class Composition:
    """A scenario, its ``include`` entries as written, and the ``file:line`` of every check's
    definition and of every (probe, setting) value in force."""

    scenario: Scenario
    includes: tuple[str, ...] = ()
    check_origins: Mapping[str, str] = dataclasses.field(default_factory=dict)
    setting_origins: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict)


def _shipped() -> dict[str, Path]:
    """Name -> file, for every YAML file shipped in talbench.scenarios: what ``include`` may name."""
    root = importlib.resources.files("talbench.scenarios")
    return {Path(str(entry)).stem: Path(str(entry)) for entry in root.iterdir() if str(entry).endswith(".yaml")}


def builtin_scenarios() -> dict[str, Path]:
    """Scenario name -> file, for the YAML files shipped in talbench.scenarios; fragments
    (``_name.yaml``, includable only) are not scenarios."""
    return {name: path for name, path in _shipped().items() if not name.startswith("_")}


def _is_path(name_or_file: str) -> bool:
    return Path(name_or_file).suffix in (".yaml", ".yml") or "/" in name_or_file


def resolve(name_or_file: str) -> Path:
    """A built-in scenario name or a path to a YAML file."""
    path = Path(name_or_file)
    if _is_path(name_or_file):
        if not path.is_file():
            raise UsageError(f"scenario file {name_or_file} does not exist")
        return path
    builtin = builtin_scenarios()
    if name_or_file not in builtin:
        known = ", ".join(sorted(builtin)) or "none"
        raise UsageError(f"unknown scenario {name_or_file!r} (built-in: {known}; or give a path to a .yaml file)")
    return builtin[name_or_file]


def load(path: Path, metrics: Mapping[str, Metric], probe_settings: ProbeSettings | None = None) -> Scenario:
    """Read and validate a scenario file (and what it includes) against the known ``metrics``.
    ``probe_settings(probe, raw)`` validates a probe's settings block (raising ScenarioError)."""
    return load_composition(path, metrics, probe_settings).scenario


def load_composition(path: Path, metrics: Mapping[str, Metric], probe_settings: ProbeSettings | None = None) -> Composition:
    """``load``, keeping where each check and setting is written."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
    return compose(text, str(path), metrics, probe_settings)


def parse(text: str, where: str, metrics: Mapping[str, Metric], probe_settings: ProbeSettings | None = None) -> Scenario:
    """A scenario from ``text``; ``where`` names it in errors and anchors relative includes."""
    return compose(text, where, metrics, probe_settings).scenario


def compose(
    text: str,
    where: str,
    metrics: Mapping[str, Metric],
    probe_settings: ProbeSettings | None = None,
    chain: tuple[tuple[str, str], ...] = (),
) -> Composition:
    """``parse`` with origins; ``chain``: (identity, name) of the files including this one."""
    doc = _yaml(text, where)

    def fail(message: str, mapping: _Lines | None = None, key: str | None = None) -> ScenarioError:
        line = 0
        if mapping is not None:
            line = mapping.key_lines.get(key, mapping.line) if key else mapping.line
        return ScenarioError(f"{where}:{line}: {message}" if line else f"{where}: {message}")

    unknown = set(doc) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"unknown key {key!r} (expected: {', '.join(sorted(_TOP_KEYS))})", doc, key)
    schema = doc.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise fail(f"schema {schema!r} is not supported (this talbench reads schema {SCHEMA_VERSION})", doc, "schema")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise fail("'name' must be a non-empty string", doc, "name")

    chain = (*chain, (str(Path(where).resolve()), where))
    parts = [(entry, line, _included(entry, line, where, chain, metrics, probe_settings)) for entry, line in _entries(doc, fail)]
    own_checks = _own_checks(doc, metrics, fail, where, required=not parts)
    checks, check_origins = _merge_checks(parts, own_checks, where)
    probes, setting_origins, probe_lines = _merge_probes(parts, doc, metrics, fail, where)
    if probe_settings is not None:
        for probe, settings in probes.items():
            try:
                probe_settings(probe, settings)
            except ScenarioError as exc:
                raise ScenarioError(f"{where}:{probe_lines[probe]}: probe {probe!r}: {exc}") from exc

    description = str(doc.get("description") or "")
    scenario = Scenario(name, description, where, tuple(checks), probes=probes, schema=SCHEMA_VERSION)
    return Composition(scenario, tuple(entry for entry, _, _ in parts), check_origins, setting_origins)


def _yaml(text: str, where: str) -> _Lines:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ScenarioError(f"{where}{line}: YAML error: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: YAML error: {exc}") from exc
    if not isinstance(doc, _Lines):
        raise ScenarioError(f"{where}: a scenario is a mapping with 'name' and 'checks'")
    return doc


def _entries(doc: _Lines, fail: Callable[..., ScenarioError]) -> list[tuple[str, int]]:
    raw = doc.get("include")
    if raw is None:
        return []
    if not isinstance(raw, _Items) or not all(isinstance(e, str) and e.strip() for e in raw):
        raise fail("'include' must be a list of built-in scenario names or relative .yaml paths", doc, "include")
    return list(zip((str(e).strip() for e in raw), raw.item_lines, strict=True))


def _included(
    entry: str,
    line: int,
    where: str,
    chain: tuple[tuple[str, str], ...],
    metrics: Mapping[str, Metric],
    probe_settings: ProbeSettings | None,
) -> Composition:
    if _is_path(entry):
        path = Path(where).parent / entry
        if not path.is_file():
            raise ScenarioError(f"{where}:{line}: include {entry!r}: no such file {path}")
    else:
        shipped = _shipped()
        if entry not in shipped:
            known = ", ".join(sorted(shipped)) or "none"
            raise ScenarioError(f"{where}:{line}: include {entry!r}: no built-in scenario of that name (built-in: {known})")
        path = shipped[entry]
    identity = str(path.resolve())
    if any(identity == seen for seen, _ in chain):
        cycle = " -> ".join([name for _, name in chain] + [str(path)])
        raise ScenarioError(f"{where}:{line}: include cycle: {cycle}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{where}:{line}: include {entry!r}: cannot read {path}: {exc.strerror}") from exc
    return compose(text, str(path), metrics, probe_settings, chain)


def _own_checks(
    doc: _Lines, metrics: Mapping[str, Metric], fail: Callable[..., ScenarioError], where: str, *, required: bool
) -> list[Check]:
    raw_checks = doc.get("checks")
    if required and (not isinstance(raw_checks, list) or not raw_checks):
        raise fail("'checks' must be a non-empty list", doc, "checks")
    if raw_checks is None:
        return []
    if not isinstance(raw_checks, list):
        raise fail("'checks' must be a list", doc, "checks")
    checks: list[Check] = []
    for raw in raw_checks:
        if not isinstance(raw, _Lines):
            raise fail("each check is a mapping with name, metric, scope, source", doc, "checks")
        checks.append(_parse_check(raw, metrics, fail))
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            raise ScenarioError(f"{where}:{check.line}: duplicate check name {check.name!r}")
        seen.add(check.name)
    return checks


def _differences(a: Check, b: Check) -> str:
    return ", ".join(field for field in _COMPARED if getattr(a, field) != getattr(b, field))


def _merge_checks(
    parts: list[tuple[str, int, Composition]], own: list[Check], where: str
) -> tuple[list[Check], dict[str, str]]:
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


def _merge_probes(
    parts: list[tuple[str, int, Composition]],
    doc: _Lines,
    metrics: Mapping[str, Metric],
    fail: Callable[..., ScenarioError],
    where: str,
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str], dict[str, int]]:
    """Included settings, then this file's; returns the blocks, the origin of every setting and
    the line (in this file) each probe's block is answered for."""
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

    own = doc.get("probes") or _Lines()
    if not isinstance(own, _Lines):
        raise fail("'probes' must be a mapping of probe name to settings", doc, "probes")
    known_probes = {metric.probe for metric in metrics.values()}
    for probe, settings in own.items():
        if probe not in known_probes:
            raise fail(f"unknown probe {probe!r} (known: {', '.join(sorted(known_probes))})", own, probe)
        settings = _Lines() if settings is None else settings
        if not isinstance(settings, _Lines):
            raise fail(f"settings of probe {probe!r} must be a mapping", own, probe)
        lines[probe] = own.key_lines[probe]
        merged = probes.setdefault(str(probe), {})
        for key, value in settings.items():
            merged[str(key)] = _plain(value)
            origins[(str(probe), str(key))] = f"{where}:{settings.key_lines.get(str(key), settings.line)}"
            conflicts.pop((str(probe), str(key)), None)
    if conflicts:
        raise ScenarioError(next(iter(conflicts.values())))
    return probes, origins, lines


def _plain(value: Any) -> Any:
    """YAML as plain dicts and lists (what drivers and run.json get)."""
    if isinstance(value, (dict, list)):
        return {str(k): _plain(v) for k, v in value.items()} if isinstance(value, dict) else [_plain(v) for v in value]
    return value


def _parse_check(raw: _Lines, metrics: Mapping[str, Metric], fail: Callable[..., ScenarioError]) -> Check:
    unknown = set(raw) - _CHECK_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"unknown key {key!r} in check (expected: {', '.join(sorted(_CHECK_KEYS))})", raw, key)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise fail("a check needs a 'name'", raw)
    metric_name = raw.get("metric")
    if not isinstance(metric_name, str) or metric_name not in metrics:
        raise fail(f"check {name!r}: unknown metric {metric_name!r} (known: {', '.join(sorted(metrics))})", raw, "metric")
    metric = metrics[metric_name]
    try:
        scope = Scope(raw.get("scope"))
    except ValueError:
        raise fail(
            f"check {name!r}: unknown scope {raw.get('scope')!r} (known: {', '.join(s.value for s in Scope)})", raw, "scope"
        ) from None
    if SCOPE_KIND[scope] is not metric.kind:
        raise fail(f"check {name!r}: metric {metric_name} is per {metric.kind.value}, scope {scope.value} is not", raw, "scope")
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise fail(f"check {name!r}: every threshold needs its 'source'", raw)
    limits: dict[str, Quantity | None] = {}
    for key in ("warn", "fail"):
        value = raw.get(key)
        if value is None:
            limits[key] = None
            continue
        try:
            limits[key] = parse_quantity(value, metric.dimension)
        except UnitError as exc:
            raise fail(f"check {name!r}: {key}: {exc}", raw, key) from exc
    warn, fail_at = limits["warn"], limits["fail"]
    if warn is not None and fail_at is not None:
        inverted = warn.value > fail_at.value if metric.lower_is_better else warn.value < fail_at.value
        if inverted:
            raise fail(f"check {name!r}: warn {warn} lies beyond fail {fail_at}", raw, "warn")
    return Check(
        name=name,
        metric=metric_name,
        scope=scope,
        warn=warn,
        fail=fail_at,
        source=" ".join(source.split()),
        description=" ".join(str(raw.get("description") or "").split()),
        line=raw.line,
    )
