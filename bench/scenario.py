"""Scenario files: YAML naming checks (metric, scope, warn/fail limits, source) and per-probe
settings.  Parsing is strict and every error names the file and line."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from talbench.bench.errors import ScenarioError, UsageError
from talbench.bench.model import SCOPE_KIND, Check, Scenario, Scope
from talbench.bench.metric import Metric
from talbench.bench.units import Quantity, UnitError, parse_quantity

SCHEMA_VERSION = 1
_CHECK_KEYS = {"name", "metric", "scope", "warn", "fail", "source", "description"}
_TOP_KEYS = {"schema", "name", "description", "probes", "checks"}


class _Lines(dict):
    """A mapping that remembers the line (1-based) where it and each of its keys stand."""

    line: int = 0
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Lines:  # type: ignore[override]
        mapping = _Lines(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def builtin_scenarios() -> dict[str, Path]:
    """Scenario name -> file, for the YAML files shipped in talbench.scenarios."""
    root = importlib.resources.files("talbench.scenarios")
    return {Path(str(entry)).stem: Path(str(entry)) for entry in root.iterdir() if str(entry).endswith(".yaml")}


def resolve(name_or_file: str) -> Path:
    """A built-in scenario name or a path to a YAML file."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or "/" in name_or_file:
        if not path.is_file():
            raise UsageError(f"scenario file {name_or_file} does not exist")
        return path
    builtin = builtin_scenarios()
    if name_or_file not in builtin:
        known = ", ".join(sorted(builtin)) or "none"
        raise UsageError(f"unknown scenario {name_or_file!r} (built-in: {known}; or give a path to a .yaml file)")
    return builtin[name_or_file]


def load(path: Path, metrics: Mapping[str, Metric], probe_settings: Callable[[str, Mapping[str, Any]], Any] | None = None) -> Scenario:
    """Read and validate a scenario file against the known ``metrics``.

    ``probe_settings(probe, raw)`` validates a probe's settings block (raising ScenarioError);
    it is how drivers take part in validation without this module knowing them.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse(text, str(path), metrics, probe_settings)


def parse(
    text: str,
    where: str,
    metrics: Mapping[str, Metric],
    probe_settings: Callable[[str, Mapping[str, Any]], Any] | None = None,
) -> Scenario:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ScenarioError(f"{where}{line}: YAML error: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: YAML error: {exc}") from exc
    if not isinstance(doc, _Lines):
        raise ScenarioError(f"{where}: a scenario is a mapping with 'name' and 'checks'")

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
    raw_checks = doc.get("checks")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise fail("'checks' must be a non-empty list", doc, "checks")

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

    probes = doc.get("probes") or {}
    if not isinstance(probes, dict):
        raise fail("'probes' must be a mapping of probe name to settings", doc, "probes")
    known_probes = {metric.probe for metric in metrics.values()}
    for probe, settings in probes.items():
        if probe not in known_probes:
            raise fail(f"unknown probe {probe!r} (known: {', '.join(sorted(known_probes))})", probes, probe)
        if settings is not None and not isinstance(settings, dict):
            raise fail(f"settings of probe {probe!r} must be a mapping", probes, probe)
        if probe_settings is not None:
            try:
                probe_settings(probe, settings or {})
            except ScenarioError as exc:
                raise fail(f"probe {probe!r}: {exc}", probes, probe) from exc

    return Scenario(
        name=name,
        description=str(doc.get("description") or ""),
        path=where,
        checks=tuple(checks),
        probes={str(k): dict(v or {}) for k, v in probes.items()},
        schema=SCHEMA_VERSION,
    )


def _parse_check(raw: _Lines, metrics: Mapping[str, Metric], fail: Callable[..., ScenarioError]) -> Check:
    unknown = set(raw) - _CHECK_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"unknown key {key!r} in check (expected: {', '.join(sorted(_CHECK_KEYS))})", raw, key)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise fail("a check needs a 'name'", raw)
    metric_name = raw.get("metric")
    if metric_name not in metrics:
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
