"""Hypothesis strategies for fuzzing the agent's HTTP API (tests/agents/test_api_fuzz.py): JSON
values, near-valid params for any declared parameter model, job-request bodies (good, wrong,
deep, huge, not JSON), auth headers and path segments."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import quote

from hypothesis import strategies as st
from pydantic import BaseModel, RootModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from talbench.agents.probe import Probe
from tests.agents.helpers import TOKEN


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight (``st.one_of`` drops repeated ones)."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda s: s)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)
EDGE_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**300, 0.5, -0.0, 1e-300, 1e308, float("inf")])


# ---- params near what a declared model accepts -----------------------------------------------


def values_for(annotation: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """JSON-like values near what ``annotation`` accepts, now and then of another type."""
    origin, args = get_origin(annotation), get_args(annotation)
    near: st.SearchStrategy[Any]
    if origin is Annotated:
        return values_for(args[0], depth)
    if isinstance(annotation, type) and issubclass(annotation, RootModel):
        return values_for(annotation.model_fields["root"].annotation, depth)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        near = params_for(annotation, depth + 1)
    elif origin is Literal:
        near = st.sampled_from(args)
    elif origin in (Union, types.UnionType):
        near = st.one_of([values_for(arg, depth) for arg in args])
    elif origin in (tuple, list, set, frozenset):
        near = st.lists(values_for(args[0] if args else Any, depth), max_size=3)
    elif origin in (dict, Mapping):
        near = st.dictionaries(st.text(max_size=8), values_for(args[1] if args else Any, depth), max_size=3)
    elif annotation is bool:
        near = st.booleans()
    elif annotation is int:
        near = st.integers(-5, 100) | st.integers(-(2**64), 2**64) | EDGE_NUMBERS
    elif annotation is float:
        near = st.floats(-1e6, 1e6) | st.floats(allow_nan=False) | EDGE_NUMBERS
    elif annotation is str:
        near = st.sampled_from(["127.0.0.1", "::1", "localhost", "a", "", "a-b"]) | st.text(max_size=20)
    else:
        return JSON
    return weighted((3, near), (1, SCALARS))


def field_values(info: FieldInfo, depth: int) -> st.SearchStrategy[Any]:
    """A field's values, with its declared bounds and just past them."""
    edges: list[float] = []
    for item in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            bound = getattr(item, attr, None)
            if isinstance(bound, (int, float)) and not isinstance(bound, bool):
                edges += [bound, bound - 1, bound + 1, bound * 10, bound + 0.5]
    values = values_for(info.annotation, depth)
    return st.one_of(values, st.sampled_from(edges)) if edges else values


@st.composite
def params_for(draw: st.DrawFn, model: type[BaseModel], depth: int = 0) -> Any:
    """Near-valid params of ``model``: every default, the required fields and up to 3 others drawn
    (near-valid or of another type), now and then one field dropped or an unknown one added.
    A RootModel (a union of actions): its root's.  Deeper than 3 models: any dict."""
    if issubclass(model, RootModel):
        return draw(values_for(model, depth))
    if depth > 3:
        return draw(st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    body = {
        key: to_jsonable_python(info.get_default(call_default_factory=True))
        for key, info in fields.items()
        if not info.is_required()
    }
    required = [key for key, info in fields.items() if info.is_required()]
    for key in [*required, *draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))] if fields else []:
        body[key] = draw(field_values(fields[key], depth))
    change = draw(st.sampled_from(["none", "none", "none", "drop", "unknown"]))
    if change == "drop" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif change == "unknown":
        body[draw(st.text(max_size=5))] = draw(SCALARS)
    return body


def job_params(job: Probe) -> st.SearchStrategy[Any]:
    """Params for a registered job: near its declared model (if it has one), or any dict."""
    model = getattr(job, "params", None)
    random = st.dictionaries(st.text(max_size=8), JSON, max_size=4)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return weighted((2, params_for(model)), (1, random))
    return random


# ---- request bodies ---------------------------------------------------------------------------

ENVELOPE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "schema": st.just(1) | st.sampled_from([0, 2, True, 1.0, "1", None, [1]]),
    "run_id": st.sampled_from(["r", "run-1", "a" * 54, "a" * 55, "-r", "R", "a/b", "a\n", ""]) | st.text(max_size=60),
}


@st.composite
def envelopes(draw: st.DrawFn, table: Mapping[str, Probe]) -> dict[str, Any]:
    """A job request: each field right, wrong or absent; params for the named job."""
    name = draw(st.sampled_from([*sorted(table), "nope", ""]))
    params = job_params(table[name]) if name in table else JSON
    body: dict[str, Any] = {}
    for key, good in (*ENVELOPE_VALUES.items(), ("probe", st.just(name)), ("params", params)):
        choice = draw(st.sampled_from(["good", "good", "good", "good", "wrong", "absent"]))
        if choice != "absent":
            body[key] = draw(good if choice == "good" else SCALARS | JSON)
    body.update(draw(st.dictionaries(st.text(max_size=5), SCALARS, max_size=1)))  # sometimes an unknown field
    return body


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def deep(depth: int, opener: bytes, closed: bool) -> bytes:
    closer = {b"[": b"]", b'{"a":': b"}", b'[{"a":': b"}]"}[opener]
    return opener * depth + (b"1" + closer * depth if closed else b"")


DEEP = st.builds(deep, st.integers(150, 6000), st.sampled_from([b"[", b'{"a":', b'[{"a":']), st.booleans())
ODD_BODIES = st.sampled_from(
    [
        b"",
        b" ",
        b"null",
        b"[]",
        b"1e999",
        b"1" * 5000,
        b"NaN",
        b"Infinity",
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
        b'{"schema":1e400}',
        b'{"schema":1,"schema":1}',
        b"\x00",
        b"{}" * 3,
        b'{"a":1}garbage',
        "\ud800".encode("utf-8", "surrogatepass"),
    ]
)


@st.composite
def mutated(draw: st.DrawFn, table: Mapping[str, Probe]) -> bytes:
    """A job request's JSON cut short, with bytes flipped or inserted."""
    data = bytearray(dumps(draw(envelopes(table))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        what = draw(st.sampled_from(["cut", "flip", "insert"]))
        if what == "cut":
            del data[at:]
        elif what == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@st.composite
def huge(draw: st.DrawFn, limit: int, name: str) -> bytes:
    """Around and past ``limit`` bytes: padded valid JSON, deep, a long string, a long array."""
    size = draw(st.integers(limit - 100, 3 * limit))
    kind = draw(st.sampled_from(["spaces", "deep", "string", "array"]))
    if kind == "spaces":
        return b" " * size + dumps({"schema": 1, "run_id": "r", "probe": name, "params": {}})
    if kind == "deep":
        return b"[" * size
    if kind == "string":
        return b'{"schema":1,"run_id":"r","probe":"' + b"p" * size + b'"}'
    return b"[" + b"1," * (size // 2) + b"1]"


def bodies(table: Mapping[str, Probe], limit: int) -> st.SearchStrategy[bytes]:
    """Bodies for POST /v1/jobs: job requests (mostly), any JSON, JSON nested up to 6000 deep (as
    the body or as params), bytes, odd literals, broken job requests, bodies around ``limit``."""
    name = min(table, default="x")

    def in_params(nested: bytes) -> bytes:
        return b'{"schema":1,"run_id":"r","probe":"%s","params":{"x":%s}}' % (name.encode(), nested)

    return weighted(
        (9, envelopes(table).map(dumps)),
        *((1, other) for other in (JSON.map(dumps), DEEP, DEEP.map(in_params), st.binary(max_size=300), ODD_BODIES)),
        (1, mutated(table)),
        (1, huge(limit, name)),
    )


# ---- headers and paths ------------------------------------------------------------------------

TOKEN_CHARS = st.characters(blacklist_categories=("Cc", "Cs"))  # what an HTTP client can put in a header
GOOD_AUTH = st.sampled_from(
    [
        {"Authorization": f"Bearer {TOKEN}"},
        {"X-Talbench-Token": TOKEN},
        {"Authorization": "Bearer x", "X-Talbench-Token": TOKEN},
    ]
)
AUTHS = weighted(  # the token two times out of three, so that most requests get past it
    (6, GOOD_AUTH),
    (
        1,
        st.sampled_from(
            [
                {},
                {"Authorization": TOKEN},
                {"Authorization": "Bearer"},
                {"Authorization": f"Basic {TOKEN}"},
                {"X-Talbench-Token": TOKEN + "x"},
            ]
        ),
    ),
    (1, st.builds(lambda t: {"Authorization": f"Bearer {t}"}, st.text(TOKEN_CHARS, max_size=40))),
    (1, st.builds(lambda t: {"X-Talbench-Token": t}, st.text(TOKEN_CHARS, max_size=40))),
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "application/json; charset=latin-1",
        "application/json; charset=nope",
        "multipart/form-data; boundary=x",
    ]
)
ENCODINGS = st.sampled_from([None] * 12 + ["identity", "gzip", "deflate", "br", "zstd", "x-nope"])
A_JOB = "<a job's id>"  # a path segment the test replaces by the id of a job it submits
URL_CHARS = st.characters(codec="ascii", categories=("L", "N", "P", "S"), exclude_characters="?#/\\")
SEGMENTS = weighted(
    (2, st.text(max_size=60).map(lambda s: quote(s, safe=""))),
    (1, st.binary(max_size=30).map(lambda b: quote(b, safe=""))),
    (1, st.text(URL_CHARS, max_size=30)),
    (
        1,
        st.sampled_from(
            ["", ".", "..", "%", "%zz", "%00", "%FF", "%2e%2e", "a%2Fb", "r", "run-1", "x" * 65, "0123abcd"]
        ),
    ),
    (1, st.just(A_JOB)),
)
RAW_PATHS = weighted((3, st.text(URL_CHARS, max_size=30).map(str.encode)), (1, st.binary(max_size=30)))
METHODS = st.sampled_from(["GET", "DELETE", "POST", "PUT", "PATCH", "OPTIONS", "HEAD"])
HEADER_BYTES = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


def authorized(headers: Mapping[str, str]) -> bool:
    """Whether the agent should take ``headers`` as carrying its token."""
    scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
    return (scheme.lower() == "bearer" and value.strip() == TOKEN) or headers.get(
        "X-Talbench-Token", ""
    ).strip() == TOKEN
