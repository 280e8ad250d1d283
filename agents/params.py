"""Declared parameters: a probe's settings written once, read everywhere.

A probe declares its parameters as one frozen pydantic model (a ``Params`` subclass) whose fields
carry the default, the bounds and the help text (``param``).  The same declaration is read by:

- the scenario parser (``talbench.bench.probes.declared.from_scenario``, which first turns unit
  strings such as ``20ms`` or ``22MiB`` into plain numbers for the fields declared with a unit),
- the coordinator's driver (the validated record is what it plans with),
- the agent, which validates the untrusted body of ``POST /v1/jobs`` with it (``validate``),
- ``talbench scenarios`` (``describe``).

Validation is pydantic's (strict types: a bool is not an int, a string is not a number, no NaN or
infinity; unknown fields refused), and every failure becomes one ``ParamError`` line that names
the field, e.g. ``count: must be at most 100000 (got 1000000)``.

Fields marked ``coordinator_only`` (trust floors, parallelism) never travel to the agent; the
agent's job model for a probe is the settings model plus what the driver fills in (peers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_ERROR_LINE = 300


class ParamError(ValueError):
    """Parameters that are missing, malformed or out of bounds: one line naming the field."""


@dataclass(frozen=True)
class Unit:
    """A field's unit: seconds, bytes or per second; scenario files may write it with a suffix
    (``20ms``, ``22MiB``, ``500/s``)."""

    name: str


SECONDS = Unit("seconds")
BYTES = Unit("bytes")
PER_SECOND = Unit("per second")

_UNIT = "talbench_unit"
_COORDINATOR_ONLY = "talbench_coordinator_only"


class Params(BaseModel):
    """Base of every probe's declared parameters: frozen, strict, closed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


P = TypeVar("P", bound=BaseModel)  # a Params model, or a RootModel over a union of them (a job's actions)


def param(
    default: Any = ...,
    *,
    help: str,
    ge: float | None = None,
    le: float | None = None,
    unit: Unit | None = None,
    coordinator_only: bool = False,
    max_length: int | None = None,
    min_length: int | None = None,
    sequence: bool = False,
    pattern: str | None = None,
) -> Any:
    """One declared field: default (``...``: required), bounds, help text, unit and side.

    ``sequence`` lets a tuple field accept a JSON array (its items stay strict)."""
    extra: dict[str, Any] = {}
    if unit is not None:
        extra[_UNIT] = unit.name
    if coordinator_only:
        extra[_COORDINATOR_ONLY] = True
    return Field(
        default,
        description=help,
        ge=ge,
        le=le,
        max_length=max_length,
        min_length=min_length,
        pattern=pattern,
        strict=False if sequence else None,
        json_schema_extra=extra or None,
    )


def validate(model: type[P], raw: Mapping[str, Any] | None) -> P:
    """``raw`` (JSON-like: dicts, lists, numbers, strings) as a ``model``; ParamError otherwise."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamError(f"parameters must be an object, not {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ParamError(error_line(exc, model)) from None
    except RecursionError:
        raise ParamError("parameters are nested too deeply") from None


def error_line(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first error of ``exc`` as one line: ``field: what is wrong (got value)``."""
    errors = exc.errors(include_url=False)
    if not errors:
        return "invalid parameters"
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"]) or "parameters"
    kind = first["type"]
    context = first.get("ctx") or {}
    if kind == "extra_forbidden":
        known = ", ".join(sorted(f.alias or n for n, f in model.model_fields.items())) if len(first["loc"]) == 1 else ""
        message = f"unknown parameter {loc!r}" + (f" (known: {known})" if known else "")
    elif kind == "missing":
        message = f"{loc} is missing"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = next(iter(context.values()), "?")
        word = {"greater_than_equal": "at least", "less_than_equal": "at most"}.get(kind, kind.replace("_", " "))
        message = f"{loc} must be {word} {bound} (got {_short(first.get('input'))})"
    else:
        text = str(first["msg"]).removeprefix("Value error, ").removeprefix("Input should be ")
        if loc == "parameters":
            message = text
        else:
            got = f" (got {_short(first.get('input'))})" if "input" in first and kind != "value_error" else ""
            message = (
                f"{loc}: must be {text}{got}" if first["msg"].startswith("Input should") else f"{loc}: {text}{got}"
            )
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return " ".join(message.split())[:MAX_ERROR_LINE]


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested thousands deep, or an int too long to print
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


def unit_of(model: type[BaseModel], field: str) -> Unit | None:
    extra = model.model_fields[field].json_schema_extra
    name = extra.get(_UNIT) if isinstance(extra, dict) else None
    return Unit(str(name)) if name else None


def coordinator_only(model: type[BaseModel], field: str) -> bool:
    extra = model.model_fields[field].json_schema_extra
    return bool(isinstance(extra, dict) and extra.get(_COORDINATOR_ONLY))


def wire(settings: Params) -> dict[str, Any]:
    """What the agent is sent of ``settings``: every field but the coordinator's own, as JSON."""
    dumped = settings.model_dump(mode="json")
    return {name: value for name, value in dumped.items() if not coordinator_only(type(settings), name)}


@dataclass(frozen=True)
class ParamDoc:
    """One declared field as ``talbench scenarios`` shows it."""

    name: str
    default: Any
    required: bool
    bounds: str
    unit: str
    help: str
    coordinator_only: bool


def describe(model: type[BaseModel]) -> tuple[ParamDoc, ...]:
    docs = []
    for name, info in model.model_fields.items():
        bounds = []
        for item in info.metadata:
            for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                value = getattr(item, attr, None)
                if value is not None:
                    bounds.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
        unit = unit_of(model, name)
        docs.append(
            ParamDoc(
                name=name,
                default=None if info.is_required() else info.default,
                required=info.is_required(),
                bounds=", ".join(bounds),
                unit=unit.name if unit else "",
                help=info.description or "",
                coordinator_only=coordinator_only(model, name),
            )
        )
    return tuple(docs)
