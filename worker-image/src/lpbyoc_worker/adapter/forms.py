"""Request fields parsed and checked the way ai-runner's FastAPI routes do it (pure functions).

go-livepeer decodes a 422 only as FastAPI's list `{"detail": [{"type", "loc", "msg", "input"}]}`,
so every "the request does not fit the schema" failure (missing field, wrong type, out of range)
is collected here into that shape, all errors at once as FastAPI reports them. The wording and
`type` codes are pydantic v2's, so a client that parses FastAPI errors reads ours too.

Form values follow FastAPI's rules: every value is a string, an empty string counts as "not sent"
(the default applies, or `missing` when required), the first of repeated fields wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["str", "int", "float", "bool", "file"]
Location = Literal["form", "json"]

# pydantic's lax boolean strings (case-insensitive).
TRUE_STRINGS = frozenset({"1", "on", "t", "true", "y", "yes"})
FALSE_STRINGS = frozenset({"0", "off", "f", "false", "n", "no"})
_NO_DEFAULT: Any = object()


class ValidationFailed(Exception):
    """The request does not fit the route's schema: answered 422 with `errors` as FastAPI does."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = list(errors)


def error(kind: str, field: str | None, msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    """One FastAPI validation error; `field=None` names the body itself."""
    entry: dict[str, Any] = {
        "type": kind,
        "loc": ["body"] if field is None else ["body", field],
        "msg": msg,
        "input": _jsonable(value),
    }
    if ctx:
        entry["ctx"] = ctx
    return entry


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return f"<{type(value).__name__}>"


@dataclass(frozen=True)
class Field:
    """One request field as the OpenAPI spec declares it, plus the bounds this worker enforces.

    Bounds are ours (ai-runner has none): without them a schema-valid request can ask for a
    billion steps or a 10⁶-pixel-wide image; out-of-range values are answered 422 like pydantic's
    `ge`/`le` constraints.
    """

    name: str
    kind: Kind
    default: Any = _NO_DEFAULT
    ge: float | None = None
    le: float | None = None

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


def _convert(field: Field, value: Any, where: Location) -> tuple[Any, dict[str, Any] | None]:
    """(converted value, None) or (None, the validation error)."""
    name = field.name
    if field.kind == "str":
        if isinstance(value, str):
            return value, None
        return None, error("string_type", name, "Input should be a valid string", value)
    if field.kind == "int":
        if isinstance(value, bool):
            return None, error("int_type", name, "Input should be a valid integer", value)
        if isinstance(value, int):
            return value, None
        if isinstance(value, float):
            if value.is_integer():
                return int(value), None
            return None, error(
                "int_from_float",
                name,
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        if isinstance(value, str):
            try:
                return int(value.strip()), None
            except ValueError:
                return None, error(
                    "int_parsing",
                    name,
                    "Input should be a valid integer, unable to parse string as an integer",
                    value,
                )
        return None, error("int_type", name, "Input should be a valid integer", value)
    if field.kind == "float":
        number: float
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None, error("float_type", name, "Input should be a valid number", value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return None, error(
                    "float_parsing",
                    name,
                    "Input should be a valid number, unable to parse string as a number",
                    value,
                )
        else:
            number = float(value)
        if not math.isfinite(number):
            return None, error("finite_number", name, "Input should be a finite number", value)
        return number, None
    if field.kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int) and value in (0, 1):
            return bool(value), None
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in TRUE_STRINGS:
                return True, None
            if lowered in FALSE_STRINGS:
                return False, None
            return None, error(
                "bool_parsing", name, "Input should be a valid boolean, unable to interpret input", value
            )
        return None, error("bool_type", name, "Input should be a valid boolean", value)
    raise AssertionError(f"file fields are not converted: {field}")


def _bounds(field: Field, value: Any) -> dict[str, Any] | None:
    if field.ge is not None and value < field.ge:
        bound = _plain(field.ge)
        return error(
            "greater_than_equal",
            field.name,
            f"Input should be greater than or equal to {bound}",
            value,
            ge=bound,
        )
    if field.le is not None and value > field.le:
        bound = _plain(field.le)
        return error(
            "less_than_equal", field.name, f"Input should be less than or equal to {bound}", value, le=bound
        )
    return None


def _plain(bound: float) -> int | float:
    return int(bound) if float(bound).is_integer() else bound


def is_file(value: Any) -> bool:
    """An uploaded file part (aiohttp's FileField, or anything carrying `.file` and `.filename`)."""
    return hasattr(value, "file") and hasattr(value, "filename")


def parse_fields(raw: Mapping[str, Any], fields: Sequence[Field], where: Location) -> dict[str, Any]:
    """The route's values with defaults applied; raises ValidationFailed listing every bad field.

    Optional fields without a default (seed, point_coords, ...) come back as None when not sent.
    """
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for field in fields:
        value = raw.get(field.name)
        absent = value is None or (where == "form" and isinstance(value, str) and value == "")
        if absent:
            if field.required:
                errors.append(error("missing", field.name, "Field required", None))
            else:
                values[field.name] = field.default
            continue
        if field.kind == "file":
            if is_file(value):
                values[field.name] = value
            else:
                errors.append(
                    error(
                        "value_error",
                        field.name,
                        f"Value error, Expected UploadFile, received: {type(value)}",
                        value,
                        error={},
                    )
                )
            continue
        converted, problem = _convert(field, value, where)
        if problem is None:
            problem = _bounds(field, converted)
        if problem is not None:
            errors.append(problem)
        else:
            values[field.name] = converted
    if errors:
        raise ValidationFailed(errors)
    return values


def json_object_or_fail(payload: Any) -> Mapping[str, Any]:
    """A JSON body must be an object, as pydantic's model validation requires."""
    if not isinstance(payload, dict):
        raise ValidationFailed(
            [
                error(
                    "model_attributes_type",
                    None,
                    "Input should be a valid dictionary or object to extract fields from",
                    payload,
                )
            ]
        )
    return payload


def json_decode_failure(position: int, reason: str) -> ValidationFailed:
    """What FastAPI answers for a body that is not JSON at all."""
    return ValidationFailed(
        [
            {
                "type": "json_invalid",
                "loc": ["body", position],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": reason},
            }
        ]
    )


def missing_body() -> ValidationFailed:
    return ValidationFailed([error("missing", None, "Field required", None)])
