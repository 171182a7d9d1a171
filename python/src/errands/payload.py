"""Pydantic models and dataclasses as task arguments and results.

On the way out (enqueue, a task's return value) a model becomes JSON through
:func:`to_jsonable`, the strict encoder's fallback: ``model_dump(mode="json")`` for pydantic
models, the fields of a dataclass otherwise. On the way in (a worker calling a task, a client
reading a result) :class:`Shape` rebuilds them from the task function's type hints. Only
parameters whose annotation mentions a model or a dataclass are rebuilt; every other argument is
passed through as it came, exactly as before.

pydantic is optional. When it is installed, a :class:`pydantic.TypeAdapter` validates (so
``list[Order]``, ``Order | None``, datetimes inside a dataclass, ... all work); without it,
dataclasses are still rebuilt by a small loader that checks required and unknown fields and the
plain JSON types of fields.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InvalidPayload

__all__ = ["Shape", "TaskShapes", "to_jsonable"]

log = logging.getLogger("errands")

# Kept short in error messages: a payload may be large.
_MAX_INPUT_REPR = 80


def _pydantic() -> Any:
    """The pydantic module if it can be imported, else ``None`` (tests replace this)."""
    try:
        import pydantic
    except ImportError:
        return None
    return pydantic


def _loaded_pydantic() -> Any:
    # An object can only be a pydantic model if pydantic is already imported: no import cost
    # for apps that do not use it.
    return sys.modules.get("pydantic")


@functools.lru_cache(maxsize=512)
def _cached_adapter(tp: Any) -> Any:
    return _pydantic().TypeAdapter(tp)


def _adapter(tp: Any) -> Any:
    """A pydantic TypeAdapter for ``tp``, built once per type (they are costly to build)."""
    try:
        return _cached_adapter(tp)
    except TypeError:  # unhashable, e.g. Annotated[...] with unhashable metadata
        return _pydantic().TypeAdapter(tp)


def to_jsonable(obj: Any) -> Any:
    """The JSON form of a pydantic model or dataclass instance; ``TypeError`` for anything else.

    Used as the ``default`` of the SDK's JSON encoder, which calls it for objects it does not
    know and encodes what it returns (so nested models in lists and dicts work too).
    """
    pyd = _loaded_pydantic()
    if pyd is not None and isinstance(obj, pyd.BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if pyd is not None or _pydantic() is not None:
            # pydantic knows how to write datetimes, UUIDs, enums, ... inside a dataclass.
            return _adapter(type(obj)).dump_python(obj, mode="json")
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _is_model_class(tp: Any) -> bool:
    if not isinstance(tp, type):
        return False
    if dataclasses.is_dataclass(tp):
        return True
    pyd = _loaded_pydantic()
    return pyd is not None and issubclass(tp, pyd.BaseModel)


def mentions_model(tp: Any) -> bool:
    """True when ``tp`` is, or contains (``list[X]``, ``X | None``, ...), a model or dataclass."""
    if _is_model_class(tp):
        return True
    return any(mentions_model(arg) for arg in typing.get_args(tp))


def _where(path: str, loc: Sequence[Any]) -> str:
    out = path
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_INPUT_REPR else text[: _MAX_INPUT_REPR - 3] + "..."


class Shape:
    """How to rebuild one annotated value (an argument, a result) from its JSON form."""

    __slots__ = ("_adapter", "tp")

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self._adapter = _adapter(tp) if _pydantic() is not None else None

    def load(self, value: Any, path: str) -> Any:
        """Validate ``value`` against the annotation and rebuild it.

        Raises:
            InvalidPayload: it does not fit; ``field`` is ``path`` plus where inside it.
        """
        if self._adapter is None:
            return _load_plain(self.tp, value, path)
        pyd = _pydantic()
        try:
            return self._adapter.validate_python(value)
        except pyd.ValidationError as exc:
            errors = exc.errors(include_url=False)
            first = errors[0]
            field = _where(path, first["loc"])
            reasons = [
                f"{_where(path, e['loc'])}: {e['msg']} (got {_short(e['input'])})"
                for e in errors[:3]
            ]
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise InvalidPayload(field, "; ".join(reasons) + more) from None


def _fail(path: str, why: str, value: Any) -> InvalidPayload:
    return InvalidPayload(path, f"{path}: {why} (got {_short(value)})")


_PLAIN = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _load_plain(tp: Any, value: Any, path: str) -> Any:
    """Rebuild dataclasses without pydantic; other values are checked only for plain types."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, value, path)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _load_union(args, value, path)
    if origin in (list, tuple, set, frozenset, Sequence) and args:
        if not isinstance(value, list):
            raise _fail(path, "should be a list", value)
        item = args[0]
        return [_load_plain(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) and len(args) == 2:
        if not isinstance(value, dict):
            raise _fail(path, "should be an object", value)
        return {k: _load_plain(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if tp in _PLAIN and not _plain_fits(tp, value):
        raise _fail(path, f"should be {_PLAIN[tp]}", value)
    return value


def _plain_fits(tp: type, value: Any) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _load_union(options: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None and type(None) in options:
        return None
    last: InvalidPayload | None = None
    for option in options:
        if option is type(None):
            continue
        try:
            return _load_plain(option, value, path)
        except InvalidPayload as exc:
            last = exc
    raise last or _fail(path, "does not fit", value)


def _load_dataclass(cls: type, value: Any, path: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise _fail(path, f"should be an object for {cls.__name__}", value)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    unknown = set(value) - {f.name for f in fields}
    if unknown:
        name = sorted(unknown)[0]
        raise _fail(_where(path, [name]), f"is not a field of {cls.__name__}", value[name])
    built: dict[str, Any] = {}
    for f in fields:
        where = _where(path, [f.name])
        if f.name in value:
            built[f.name] = _load_plain(hints.get(f.name, Any), value[f.name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InvalidPayload(where, f"{where}: field required")
    return cls(**built)


def _resolve(func: Callable[..., Any], name: str, annotation: Any) -> Any:
    """An annotation as a type; ``None`` when a string annotation cannot be evaluated."""
    if not isinstance(annotation, str):
        return annotation
    target = inspect.unwrap(func)
    if not hasattr(target, "__globals__"):  # a callable object: its __call__'s module
        target = type(target).__call__
    scope = getattr(target, "__globals__", {})
    try:
        return eval(annotation, scope)  # what typing.get_type_hints does, one name at a time
    except Exception as exc:
        log.warning(
            "cannot resolve the annotation %r of %s's %s (%s): it is passed through as JSON",
            annotation,
            getattr(func, "__qualname__", func),
            name,
            exc,
        )
        return None


class TaskShapes:
    """The model-typed parameters and return value of a task function, found once."""

    __slots__ = ("_params", "_signature", "result")

    def __init__(self, func: Callable[..., Any]) -> None:
        self._signature = inspect.signature(func)
        self._params: dict[str, Shape] = {}
        for i, (name, param) in enumerate(self._signature.parameters.items()):
            if i == 0 or param.annotation is inspect.Parameter.empty:
                continue  # the first is the Context
            tp = _resolve(func, name, param.annotation)
            if tp is not None and mentions_model(tp):
                self._params[name] = Shape(tp)
        ret = self._signature.return_annotation
        tp = None if ret is inspect.Signature.empty else _resolve(func, "return value", ret)
        #: How to rebuild the result, when the function is annotated to return a model.
        self.result: Shape | None = Shape(tp) if tp is not None and mentions_model(tp) else None

    def arguments(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Rebuild the model-typed arguments of a call.

        Arguments that do not bind to the signature are left as they are, so the call raises
        the ``TypeError`` it always did.

        Raises:
            InvalidPayload: an argument does not fit its annotation.
        """
        if not self._params:
            return args, kwargs
        try:
            bound = self._signature.bind(None, *args, **kwargs)
        except TypeError:
            return args, kwargs
        for name, shape in self._params.items():
            if name not in bound.arguments:
                continue
            param = self._signature.parameters[name]
            value = bound.arguments[name]
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                value = tuple(shape.load(v, f"{name}[{i}]") for i, v in enumerate(value))
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                value = {k: shape.load(v, k) for k, v in value.items()}
            else:
                value = shape.load(value, name)
            bound.arguments[name] = value
        return list(bound.args[1:]), dict(bound.kwargs)
