"""Scenario files: YAML naming checks (metric, scope, warn/fail limits, source) and per-probe
settings.  Parsing is strict and every error is one line naming the file and line.

A scenario may start from others (``include: [control-plane, ../mine.yaml]``): how an entry finds
its file and how the included checks and probe settings merge with the file's own is
talbench.bench.scenario_include (its docstring has the rules).

This module is pure: it reads files but knows no driver; metrics and a settings-validation
callback are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from talbench.bench.errors import ScenarioError, UsageError
from talbench.bench.metric import Metric
from talbench.bench.model import SCOPE_KIND, Check, Scenario, Scope
from talbench.bench.scenario_include import Composition as Composition  # re-exported: load_composition's result
from talbench.bench.scenario_include import (
    IncludeChain,
    Included,
    merge_checks,
    merge_settings,
    names_a_file,
    read_included,
    shipped_files,
)
from talbench.bench.units import Quantity, UnitError, parse_quantity

SCHEMA_VERSION = 1
_CHECK_KEYS = {"name", "metric", "scope", "warn", "fail", "source", "description"}
_TOP_KEYS = {"schema", "name", "description", "include", "probes", "checks"}

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


def builtin_scenarios() -> dict[str, Path]:
    """Scenario name -> file, for the YAML files shipped in talbench.scenarios; fragments
    (``_name.yaml``, includable only) are not scenarios."""
    return {name: path for name, path in shipped_files().items() if not name.startswith("_")}


def resolve(name_or_file: str) -> Path:
    """A built-in scenario name or a path to a YAML file."""
    path = Path(name_or_file)
    if names_a_file(name_or_file):
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


def load_composition(
    path: Path, metrics: Mapping[str, Metric], probe_settings: ProbeSettings | None = None
) -> Composition:
    """``load``, keeping where each check and setting is written."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
    return compose(text, str(path), metrics, probe_settings)


def parse(
    text: str, where: str, metrics: Mapping[str, Metric], probe_settings: ProbeSettings | None = None
) -> Scenario:
    """A scenario from ``text``; ``where`` names it in errors and anchors relative includes."""
    return compose(text, where, metrics, probe_settings).scenario


def compose(
    text: str,
    where: str,
    metrics: Mapping[str, Metric],
    probe_settings: ProbeSettings | None = None,
    chain: IncludeChain = (),
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
    parts: list[Included] = []
    for entry, line in _entries(doc, fail):
        path, included_text = read_included(entry, line, where, chain)
        parts.append((entry, line, compose(included_text, str(path), metrics, probe_settings, chain)))
    own_checks = _own_checks(doc, metrics, fail, where, required=not parts)
    checks, check_origins = merge_checks(parts, own_checks, where)
    own_settings, own_origins, own_lines = _own_settings(doc, metrics, fail, where)
    probes, setting_origins, probe_lines = merge_settings(parts, own_settings, own_origins, own_lines, where)
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


def _own_settings(
    doc: _Lines, metrics: Mapping[str, Metric], fail: Callable[..., ScenarioError], where: str
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str], dict[str, int]]:
    """The file's own ``probes`` blocks, the ``file:line`` of every setting and the line of each block."""
    blocks: dict[str, dict[str, Any]] = {}
    origins: dict[tuple[str, str], str] = {}
    lines: dict[str, int] = {}
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
        block = blocks.setdefault(str(probe), {})
        for key, value in settings.items():
            block[str(key)] = _plain(value)
            origins[(str(probe), str(key))] = f"{where}:{settings.key_lines.get(str(key), settings.line)}"
    return blocks, origins, lines


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
        raise fail(
            f"check {name!r}: unknown metric {metric_name!r} (known: {', '.join(sorted(metrics))})", raw, "metric"
        )
    metric = metrics[metric_name]
    try:
        scope = Scope(raw.get("scope"))
    except ValueError:
        raise fail(
            f"check {name!r}: unknown scope {raw.get('scope')!r} (known: {', '.join(s.value for s in Scope)})",
            raw,
            "scope",
        ) from None
    if SCOPE_KIND[scope] is not metric.kind:
        raise fail(
            f"check {name!r}: metric {metric_name} is per {metric.kind.value}, scope {scope.value} is not", raw, "scope"
        )
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
