"""Reading run.json back: every schema version talbench has written, each with its own reader.

The format's history (``schema`` field; bench/report/runjson/write.py writes the current one):

- ``talbench/run/v1``: scenario (name, path, description), target, quick, started/ended, timings,
  metadata, nodes, unready, checks (warn/fail as ``{text, value}`` in the check's unit),
  verdicts (subject as ``nodes``), results (raw measurements: ``data`` is each probe's own; a
  value of it in bench/histogram.py's JSON form, ``{"scheme": "log2-linear/32", ...}``, is a
  histogram the driver compacted samples into, read back as the Histogram record the run held).

A new version adds its reader to ``READERS`` and keeps the old ones: a run written by any
released talbench stays readable.  Readers return the frozen records of bench/model.py, the same
ones a run produces.  A file that is missing, not JSON, of an unknown schema or damaged raises
RunFileError: one line naming the file and what is wrong (the CLI exits 2), never a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, overload

from talbench.bench.errors import UsageError
from talbench.bench.histogram import SCHEME, Histogram
from talbench.bench.model import (
    Check,
    Measurement,
    Node,
    ResultKey,
    Role,
    RunRecord,
    Scenario,
    Scope,
    Status,
    Subject,
    Verdict,
)
from talbench.bench.units import Dimension, Quantity

RUN_FILE = "run.json"

T = TypeVar("T")
U = TypeVar("U")
E = TypeVar("E", bound=Enum)


class RunFileError(UsageError):
    """A run.json that cannot be read (missing, not JSON, unknown schema, damaged)."""


class _Damaged(ValueError):
    """Raised inside a reader; read_run turns it into one RunFileError line."""


def run_file(path: Path) -> Path:
    """A run directory's run.json, or ``path`` itself when it names a file."""
    return path / RUN_FILE if path.is_dir() else path


def read_run(path: Path) -> RunRecord:
    """The run recorded at ``path`` (a run directory or a run.json)."""
    file = run_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFileError(f"{file}: no such file (expected a run directory or its run.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{file}: cannot read it: {exc}") from None
    return parse_run(text, str(file))


def parse_run(text: str, name: str = "run.json") -> RunRecord:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{name}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(document, dict):
        raise RunFileError(f"{name}: not a talbench run.json (the top level is not an object)")
    schema = document.get("schema")
    reader = READERS.get(schema) if isinstance(schema, str) else None
    if reader is None:
        known = ", ".join(READERS)
        raise RunFileError(f"{name}: unknown schema {schema!r} (this talbench reads {known})")
    try:
        return reader(document)
    except _Damaged as exc:
        raise RunFileError(f"{name}: damaged {schema} file: {exc}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a shape no field check foresaw
        raise RunFileError(f"{name}: damaged {schema} file: {type(exc).__name__}: {exc}") from None


# ---- talbench/run/v1 -----------------------------------------------------------------------


@overload
def _field(doc: Mapping[str, Any], key: str, kind: type[T], where: str) -> T: ...
@overload
def _field(doc: Mapping[str, Any], key: str, kind: tuple[type[T], type[U]], where: str) -> T | U: ...
def _field(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> object:
    """``doc[key]``, which must be of ``kind`` (a bool is no int here unless bool is asked for)."""
    if key not in doc:
        raise _Damaged(f"{where}: missing {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise _Damaged(f"{where}: {key!r} is {type(value).__name__}, expected {_names(kind)}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in _kinds(kind))


def _optional(doc: Mapping[str, Any], key: str, kind: type[T], where: str) -> T:
    """An optional object or list field: absent or null is empty, anything else must be ``kind``."""
    value = doc.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise _Damaged(f"{where}: {key!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _enum(enum: type[E], raw: object, where: str) -> E:
    try:
        return enum(raw)
    except ValueError:
        raise _Damaged(f"{where}: unknown {enum.__name__} {raw!r}") from None


def _number(raw: object, where: str) -> float | None:
    """A figure as runjson.write.json_number wrote it: a number, null, or "inf"/"-inf"."""
    if raw is None:
        return None
    if raw in ("inf", "-inf"):
        return math.inf if raw == "inf" else -math.inf
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    raise _Damaged(f"{where}: {raw!r} is not a number")


def _quantity(raw: object, dimension: Dimension | None, where: str) -> Quantity | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or dimension is None:
        raise _Damaged(f"{where}: a limit needs text, value and the check's unit")
    value = _number(_field(raw, "value", (int, float), where), where)
    return Quantity(value if value is not None else math.nan, dimension, str(_field(raw, "text", str, where)))


def _v1_check(raw: object, i: int) -> Check:
    where = f"checks[{i}]"
    if not isinstance(raw, dict):
        raise _Damaged(f"{where} is not an object")
    unit = raw.get("unit")
    dimension = _enum(Dimension, unit, where) if unit is not None else None
    return Check(
        name=_field(raw, "name", str, where),
        metric=_field(raw, "metric", str, where),
        scope=_enum(Scope, _field(raw, "scope", str, where), where),
        warn=_quantity(raw.get("warn"), dimension, f"{where}.warn"),
        fail=_quantity(raw.get("fail"), dimension, f"{where}.fail"),
        source=str(raw.get("source") or ""),
    )


def _v1_verdict(raw: object, i: int) -> Verdict:
    where = f"verdicts[{i}]"
    if not isinstance(raw, dict):
        raise _Damaged(f"{where} is not an object")
    nodes = _field(raw, "nodes", list, where)
    if len(nodes) > 2 or not all(isinstance(n, str) for n in nodes):
        raise _Damaged(f"{where}: 'nodes' must be up to two node names")
    return Verdict(
        check=_field(raw, "check", str, where),
        metric=_field(raw, "metric", str, where),
        subject=Subject(tuple(nodes)),
        status=_enum(Status, _field(raw, "status", str, where), where),
        observed=_number(raw.get("observed"), f"{where}.observed"),
        dimension=_enum(Dimension, _field(raw, "unit", str, where), where),
        threshold=str(raw.get("threshold") or ""),
        message=str(raw.get("message") or ""),
        source=str(raw.get("source") or ""),
        detail=str(raw.get("detail") or ""),
        context=str(raw.get("context") or ""),  # optional: written since talbench 0.1.0's host context
    )


def _v1_measurement(raw: object, i: int) -> Measurement:
    where = f"results[{i}]"
    if not isinstance(raw, dict):
        raise _Damaged(f"{where} is not an object")
    key = ResultKey(
        _field(raw, "probe", str, where), _field(raw, "node", str, where), _field(raw, "peer", (str, type(None)), where)
    )
    return Measurement(
        key=key,
        ok=_field(raw, "ok", bool, where),
        data=_histograms(_field(raw, "data", dict, where)),
        error=raw.get("error"),
        started=_number(raw.get("started"), f"{where}.started"),
        ended=_number(raw.get("ended"), f"{where}.ended"),
        resources=_optional(raw, "resources", dict, where),
        error_kind=raw.get("error_kind"),
    )


def _histograms(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its histograms (top-level values in bench/histogram.py's JSON form) as the
    Histogram records the run held: a ValueError for a damaged one."""
    found = {key: value for key, value in data.items() if isinstance(value, dict) and value.get("scheme") == SCHEME}
    return {**data, **{key: Histogram.from_json(value) for key, value in found.items()}} if found else data


def _v1_node(raw: object, i: int) -> Node:
    where = f"nodes[{i}]"
    if not isinstance(raw, dict):
        raise _Damaged(f"{where} is not an object")
    return Node(
        name=_field(raw, "name", str, where),
        role=_enum(Role, _field(raw, "role", str, where), where),
        address=str(raw.get("address") or ""),
        labels=dict(_optional(raw, "labels", dict, where)),
        taints=tuple(str(t) for t in _optional(raw, "taints", list, where)),
    )


def _v1_list(doc: Mapping[str, Any], key: str, read: Callable[[object, int], T]) -> tuple[T, ...]:
    return tuple(read(item, i) for i, item in enumerate(_field(doc, key, list, "top level")))


def read_v1(doc: Mapping[str, Any]) -> RunRecord:
    scenario_doc = _field(doc, "scenario", dict, "top level")
    checks = _v1_list(doc, "checks", _v1_check)
    timings_doc = _optional(doc, "timings", dict, "top level")
    timings = {}
    for probe, span in timings_doc.items():
        if not isinstance(span, dict):
            raise _Damaged(f"timings.{probe} is not an object")
        timings[probe] = (
            _number(span.get("started"), f"timings.{probe}") or 0.0,
            _number(span.get("ended"), f"timings.{probe}") or 0.0,
        )
    return RunRecord(
        run_id=_field(doc, "run_id", str, "top level"),
        scenario=Scenario(
            name=_field(scenario_doc, "name", str, "scenario"),
            description=str(scenario_doc.get("description") or ""),
            path=str(scenario_doc.get("path") or ""),
            checks=checks,
        ),
        target=str(doc.get("target") or ""),
        quick=bool(doc.get("quick", False)),
        nodes=_v1_list(doc, "nodes", _v1_node),
        started=_number(_field(doc, "started", (int, float), "top level"), "started") or 0.0,
        ended=_number(_field(doc, "ended", (int, float), "top level"), "ended") or 0.0,
        results=_v1_list(doc, "results", _v1_measurement),
        verdicts=_v1_list(doc, "verdicts", _v1_verdict),
        checks=checks,
        unready=dict(_optional(doc, "unready", dict, "top level")),
        timings=timings,
        metadata=dict(_optional(doc, "metadata", dict, "top level")),
        superseded=tuple(
            _v1_measurement(item, i) for i, item in enumerate(_optional(doc, "superseded_results", list, "top level"))
        ),
    )


READERS: Mapping[str, Callable[[Mapping[str, Any]], RunRecord]] = MappingProxyType({"talbench/run/v1": read_v1})


def read_verdicts(doc: Mapping[str, Any], name: str) -> tuple[Verdict, ...]:
    """The ``verdicts`` of a document that holds them as run.json v1 writes them (the summary a
    CronJob run keeps in the cluster has them, without the raw results); RunFileError otherwise."""
    try:
        return _v1_list(doc, "verdicts", _v1_verdict)
    except _Damaged as exc:
        raise RunFileError(f"{name}: damaged: {exc}") from None
