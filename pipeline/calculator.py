"""The calculator API: a static contract plus ``open``/``process``/``close``.

A calculator declares its ports, payload types, options schema and side packets as class
attributes, so the validator reads them without an instance. See docs/calculators.md.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any as _TypingAny, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, create_model


class Any:  # noqa: D401 - a marker type
    """Port type that accepts every payload."""


@dataclass(frozen=True)
class Port:
    """A port of a calculator's contract: payload type, whether it may be left unconnected, and
    whether it is indexed (``TAG:0``, ``TAG:1``, ...)."""

    type: _TypingAny = Any
    optional: bool = False
    multiple: bool = False
    doc: str = ""


class Input(Port):
    """An input port."""


class Output(Port):
    """An output port."""


class SideInput(Port):
    """An input side packet, read in ``open`` as ``ctx.side[TAG]`` (never indexed)."""


class SideOutput(Port):
    """An output side packet, set in ``open`` with ``ctx.side_outputs[TAG].set(value)``."""


class _Stop:
    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP = _Stop()
"""Returned by a source's ``process`` when it has no more packets."""


class Calculator:
    """Base class of calculators. Subclasses set the contract attributes and override the hooks.

    The framework constructs a calculator with no arguments, then calls ``open(ctx)`` once,
    ``process(ctx)`` once per timestamp and ``close(ctx)`` once whenever ``open`` succeeded.
    """

    inputs: ClassVar[dict[str, Input]] = {}
    outputs: ClassVar[dict[str, Output]] = {}
    side_inputs: ClassVar[dict[str, SideInput]] = {}
    side_outputs: ClassVar[dict[str, SideOutput]] = {}
    Options: ClassVar[type[BaseModel] | None] = None
    timestamp_offset: ClassVar[int | None] = 0
    policy: ClassVar[str | dict] = "sync"
    max_in_flight: ClassVar[int] = 1
    # True: also call process() when only an input's timestamp bound moves (every input empty at
    # ctx.timestamp = the new bound - 1; read bounds with ctx.input_bound(TAG)), like MediaPipe's
    # SetProcessTimestampBounds. For calculators that track timestamps, e.g. FlowLimiter.
    process_timestamp_bounds: ClassVar[bool] = False
    # True: open() may run in a thread of its own, beside the other nodes' opens, from the start of
    # Graph.start (a model load or compile while the source probes its file). For an open that
    # touches nothing of another node's and needs no side packet another node's open sets.
    open_concurrently: ClassVar[bool] = False
    # Registered name; set by ``register``.
    name: ClassVar[str] = ""

    def open(self, ctx) -> None:  # pragma: no cover - default hook
        pass

    def process(self, ctx):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.process is not implemented")

    def close(self, ctx) -> None:  # pragma: no cover - default hook
        pass

    @classmethod
    def is_source(cls) -> bool:
        return not cls.inputs


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", name) if part)


def _strip_optional(annotation):
    """``X | None`` → (X, True); other annotations → (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else Any), True
    return annotation, False


def _port_type(annotation) -> _TypingAny:
    if annotation is inspect.Parameter.empty or annotation is None:
        return Any
    if isinstance(annotation, type):
        return annotation
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and origin is not types.UnionType:  # X | Y is a union (of anything), not a class
        return origin
    return Any


def calculator(fn: Callable | None = None, *, name: str | None = None,
               outputs: dict[str, _TypingAny] | None = None, register: bool = True):
    """Makes a calculator from a plain function.

    Positional parameters are inputs (tag: the upper-cased name; a ``None`` default makes the
    input optional), keyword-only parameters are options, and the return value is emitted on
    ``OUT`` (or the single declared output). ``None`` emits nothing; with several declared
    outputs, return a dict ``{tag: value}``.
    """

    def build(func: Callable):
        hints = typing.get_type_hints(func)
        sig = inspect.signature(func)
        ins: dict[str, Input] = {}
        arg_tags: list[str] = []
        option_fields: dict[str, tuple] = {}
        option_names: list[str] = []
        for p in sig.parameters.values():
            ann = hints.get(p.name, inspect.Parameter.empty)
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                default = ... if p.default is inspect.Parameter.empty else p.default
                option_fields[p.name] = (ann if ann is not inspect.Parameter.empty else _TypingAny, default)
                option_names.append(p.name)
            elif p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
                ann, optional = _strip_optional(ann)
                optional = optional or p.default is None
                tag = p.name.upper()
                ins[tag] = Input(_port_type(ann), optional=optional)
                arg_tags.append(tag)
            else:
                raise TypeError(f"@calculator {func.__name__}: *args/**kwargs are not supported")
        if outputs is None:
            ret = hints.get("return", inspect.Parameter.empty)
            outs = {"OUT": Output(_port_type(_strip_optional(ret)[0]))}
        else:
            outs = {tag: Output(_port_type(t)) for tag, t in outputs.items()}
        out_tags = list(outs)
        single = out_tags[0] if len(out_tags) == 1 else None
        calc_name = name or _camel(func.__name__)
        opts_model = None
        if option_fields:
            opts_model = create_model(
                f"{calc_name}Options", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                **option_fields,
            )

        def process(self, ctx):
            inputs = ctx.inputs
            args = []
            for tag in arg_tags:
                p = inputs.get(tag)  # an optional input left unconnected is None
                args.append(None if p is None else p.value)
            if opts_model is not None:
                o = ctx.options
                result = func(*args, **{n: getattr(o, n) for n in option_names})
            else:
                result = func(*args)
            if result is None:
                return
            if not self.__dict__.get("_checked"):  # the first result is checked against the contract
                _check_result(calc_name, outs, single, result)
                self._checked = True
            if single is not None:
                ctx.outputs[single].add(result)
            else:
                for tag, value in result.items():
                    if value is not None:
                        ctx.outputs[tag].add(value)

        doc = func.__doc__ or ""
        cls = type(calc_name, (Calculator,), {
            "__doc__": doc, "__module__": func.__module__,
            "inputs": ins, "outputs": outs, "Options": opts_model, "process": process,
            "function": staticmethod(func),
        })
        if register:
            from .registry import register as _reg

            _reg(cls, name=calc_name)
        else:
            cls.name = calc_name
        return cls

    if fn is not None:
        return build(fn)
    return build


def _check_result(name: str, outs: dict, single: str | None, result) -> None:
    """A function calculator's return value against its declared output types (a raw numpy array
    on an ``Image`` port is an error naming the port and the type)."""
    if single is None and not isinstance(result, dict):
        raise TypeError(f"{name}: declares outputs {', '.join(outs)}, so it returns a dict {{tag: value}}; "
                        f"got {type(result).__name__}")
    for tag, value in ({single: result} if single is not None else result).items():
        port = outs.get(tag)
        if port is None:
            raise TypeError(f"{name}: returned output {tag!r}, which it does not declare ({', '.join(outs)})")
        declared = port.type
        if value is not None and declared is not Any and isinstance(declared, type) and not isinstance(value, declared):
            hint = " (wrap the array: Image(array, 'RGB'))" if type_name(declared) == "Image" else ""
            raise TypeError(f"{name}: output {tag} is declared {type_name(declared)}, the function returned "
                            f"{type(value).__name__}{hint}")


def types_compatible(out_type, in_type) -> bool:
    """Whether a payload of ``out_type`` may flow into a port of ``in_type``."""
    if out_type is Any or in_type is Any or out_type is object or in_type is object:
        return True
    try:
        return issubclass(out_type, in_type)
    except TypeError:
        return True


def type_name(t) -> str:
    if t is Any:
        return "Any"
    return getattr(t, "__name__", str(t))
