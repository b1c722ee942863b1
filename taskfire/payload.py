"""Job arguments and results as msgpack (msgspec): data, never pickled code.

Encoding happens at enqueue, so an argument msgpack cannot carry fails in the caller's
hands with its name. Decoding happens in the worker, which converts each argument to the
function's annotated type (a dict back into a dataclass, a list into a tuple) and fails
the job with a clear reason when the stored data does not fit.
"""

from __future__ import annotations

import inspect
import re
import typing
from datetime import datetime
from typing import Any, Callable, Sequence

import msgspec

from .errors import ConfigError, PayloadError

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_args_decoder = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any]])

#: The largest repr kept for a result that msgpack cannot encode.
RESULT_REPR_LIMIT = 2000

#: Job parameters are job hash fields named "param:<name>", each a msgpack value.
PARAM_PREFIX = "param:"
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


def param_field(name: str) -> str:
    """The job hash field of parameter `name`, or a ConfigError if the name is not one."""
    if not isinstance(name, str) or not _PARAM_NAME.match(name):
        raise ConfigError(f"job parameter name {name!r}: use up to 100 letters, digits, '_', '.' or '-'")
    return PARAM_PREFIX + name


#: What msgspec raises for a value it cannot encode (RecursionError: nested too deeply).
_UNENCODABLE = (TypeError, ValueError, OverflowError, RecursionError)


def encode_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                signature: inspect.Signature | None = None) -> bytes:
    """Encodes a call's arguments, or raises TypeError naming the one that cannot be.

    A naive datetime is refused: msgpack would carry it as a string (an aware one travels
    as a timestamp and arrives as a datetime), and a worker elsewhere could not tell its
    time zone anyway."""
    naive = _naive_datetimes(args, kwargs)
    if naive:
        key, value = naive[0]
        raise TypeError(f"cannot enqueue {name}: argument {_label(key, signature)} is a naive datetime "
                        f"({value.isoformat()}), which has no time zone and would arrive as a string: pass "
                        f"an aware one, e.g. datetime.now(timezone.utc) or dt.replace(tzinfo=timezone.utc)")
    try:
        return _encoder.encode((args, kwargs))
    except _UNENCODABLE as whole:
        labels = _argument_labels(args, kwargs, signature)
        for label, value in labels:
            try:
                _encoder.encode(value)
            except _UNENCODABLE as exc:
                raise TypeError(
                    f"cannot enqueue {name}: argument {label} of type {type(value).__name__} "
                    f"cannot be stored ({exc}). Job arguments must be plain data (str, int, "
                    f"float, bool, None, bytes, aware datetime, list, dict, dataclass, msgspec.Struct); "
                    f"pass an id and load the object inside the job."
                ) from None
        raise TypeError(f"cannot enqueue {name}: its arguments cannot be stored ({whole})") from None


def _naive_datetimes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[int | str, datetime]]:
    """The arguments (positions or names) that are naive datetimes, looked at one level
    deep: a check per argument, never a walk through nested data."""
    found: list[tuple[int | str, datetime]] = []
    for i, v in enumerate(args):
        if isinstance(v, datetime) and v.tzinfo is None:
            found.append((i, v))
    for k, v in kwargs.items():
        if isinstance(v, datetime) and v.tzinfo is None:
            found.append((k, v))
    return found


def _label(key: int | str, signature: inspect.Signature | None) -> str:
    if isinstance(key, str):
        return repr(key)
    names = [p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)] if signature is not None else []
    return f"{names[key]!r} (position {key})" if key < len(names) else f"at position {key}"


def _argument_labels(args: tuple[Any, ...], kwargs: dict[str, Any],
                     signature: inspect.Signature | None) -> list[tuple[str, Any]]:
    keyed: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
    return [(_label(key, signature), value) for key, value in keyed]


def decode_args(raw: bytes) -> tuple[list[Any], dict[str, Any]]:
    try:
        return _args_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError(f"the job's stored arguments (field 'args') are corrupt and cannot be decoded "
                           f"({exc})") from None


def encode_result(value: Any) -> tuple[bytes, str | None]:
    """The result as msgpack; if it cannot be encoded, its repr and a note saying so."""
    try:
        return _encoder.encode(value), None
    except _UNENCODABLE as exc:
        text = repr(value)[:RESULT_REPR_LIMIT]
        return _encoder.encode(text), f"the return value could not be stored ({exc}); its repr was kept"


def decode_value(raw: bytes) -> Any:
    return _decoder.decode(raw)


class Binder:
    """Fits decoded arguments to a function: checks them against its signature and
    converts each to its annotated type."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            self.signature = inspect.signature(fn, eval_str=True)
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable annotations: arguments stay as decoded
            self.signature = inspect.signature(fn)
            hints = {}
        self._types = {
            name: hints[name] for name, p in self.signature.parameters.items()
            if name in hints and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        # Positional arguments alone fit a function of plain parameters without asking
        # inspect (the common case, and inspect's bind is slow): their names, how many
        # are required, and the types to convert them to, in order.
        params = list(self.signature.parameters.values())
        plain = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self._positional: list[tuple[str, Any]] | None = [
            (p.name, self._types.get(p.name)) for p in params] if plain else None
        self._required = sum(p.default is p.empty for p in params)

    def check(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raises TypeError at enqueue when the call could never run."""
        if self._fits(args, kwargs):
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"cannot enqueue {name}{self.signature}: {exc}") from None

    def bind(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self._fits(args, kwargs):
            return tuple(args if not self._types else [self._convert(name, param, kind, value)
                                                       for (param, kind), value in zip(self._positional or (), args)]), {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PayloadError(f"the stored arguments do not fit {name}{self.signature}: {exc}") from None
        for param, value in bound.arguments.items():
            bound.arguments[param] = self._convert(name, param, self._types.get(param), value)
        return bound.args, bound.kwargs

    def _fits(self, args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        """Whether positional arguments alone fit plain parameters (no need to ask inspect)."""
        return (self._positional is not None and not kwargs
                and self._required <= len(args) <= len(self._positional))

    @staticmethod
    def _convert(name: str, param: str, kind: Any, value: Any) -> Any:
        """A decoded argument as its annotated type."""
        if kind is None or kind is Any:
            return value
        try:
            return msgspec.convert(value, kind, strict=False)
        except msgspec.ValidationError as exc:
            raise PayloadError(f"argument {param!r} of {name} does not fit its type: {exc}") from None
        except TypeError:
            return value  # a type msgspec cannot build: the decoded value is passed as is


def encode_value(name: str, value: Any) -> bytes:
    """Encodes one named value (a job parameter), or raises TypeError naming it."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"job parameter {name!r} of type {type(value).__name__} cannot be stored "
                        f"({exc}): use plain data") from None
