"""``@calculator``: the contract read off a plain function's signature (docs/calculators.md), the
value it returns checked against it, and the base class's small parts (``STOP``, type names and
compatibility).

Each calculator is built inside its test, not at import: what a test module defines at import is
built once per process, before anything under test is switched on (a mutation run, say)."""

from __future__ import annotations

import collections.abc
import typing
from typing import Optional, Union

import pytest

from pipeline import STOP, Any, Calculator, GraphRunError, calculator, registry
from pipeline.calculator import type_name, types_compatible
from pipeline.testing import run_calculator


class Payload:
    """A payload type of these tests."""


class Special(Payload):
    pass


def test_positional_parameters_are_inputs_keyword_only_ones_options():
    def scale_by_two(value: int, extra: Optional[Payload] = None, *, factor: int = 2, label: str) -> int:
        """Doubles."""
        return value * factor

    cls = calculator(scale_by_two, register=False)
    assert issubclass(cls, Calculator) and cls.name == "ScaleByTwo" and cls.__name__ == "ScaleByTwo"
    assert cls.__doc__ == "Doubles." and cls.__module__ == __name__ and cls.function is scale_by_two
    assert list(cls.inputs) == ["VALUE", "EXTRA"]
    assert (cls.inputs["VALUE"].type, cls.inputs["VALUE"].optional) == (int, False)
    assert (cls.inputs["EXTRA"].type, cls.inputs["EXTRA"].optional) == (Payload, True)
    assert list(cls.outputs) == ["OUT"] and cls.outputs["OUT"].type is int
    opts = cls.Options
    assert opts.__name__ == "ScaleByTwoOptions" and list(opts.model_fields) == ["factor", "label"]
    assert opts.model_fields["factor"].default == 2 and opts.model_fields["label"].is_required()
    assert opts(label="x").factor == 2
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        opts(label="x", other=1)
    assert registry.find("ScaleByTwo") is None  # register=False


@pytest.mark.parametrize("fn_name, expected", [
    ("scale", "Scale"), ("scale_by_two", "ScaleByTwo"), ("__two__parts_", "TwoParts"), ("x", "X"),
    ("already_Camel", "AlreadyCamel"), ("rgb2gray", "Rgb2gray"),
])
def test_the_name_is_the_function_name_camel_cased(fn_name, expected):
    def f(value: int) -> int:
        return value

    f.__name__ = fn_name
    assert calculator(f, register=False).name == expected
    assert calculator(name="Given", register=False)(f).name == "Given"


@pytest.mark.parametrize("annotation, port_type, optional", [
    (int, int, False),
    (Payload, Payload, False),
    (int | None, int, True),
    (Optional[int], int, True),
    (Union[int, None], int, True),
    (int | str | None, Any, True),  # several types: any
    (int | str, Any, False),  # so an int or a str may come in
    (list[int], list, False),  # the origin of a generic
    (typing.List[int], list, False),
    (dict[str, int] | None, dict, True),
    (typing.Callable[[int], int], collections.abc.Callable, False),
    (typing.Literal[1, 2], Any, False),  # an origin that is not a class
])
def test_the_port_type_and_optional_come_from_the_annotation(annotation, port_type, optional):
    def f(value):
        return value

    f.__annotations__ = {"value": annotation, "return": annotation}
    cls = calculator(f, register=False)
    assert cls.inputs["VALUE"].type is port_type
    assert cls.inputs["VALUE"].optional is optional
    assert cls.outputs["OUT"].type is port_type  # the return's optional part is dropped too


def test_a_union_input_takes_each_of_its_types_in_a_graph():
    """``int | str`` was read as the class ``types.UnionType``: an int producer was refused as a type
    mismatch, and a fed int as not a UnionType."""
    from pipeline import Graph

    def show(value: int | str) -> str:
        return f"<{value}>"

    calculator(show, name="TestShowUnion")
    g = Graph.from_yaml("inputs: [a]\nnodes:\n  - {calculator: TestScale, inputs: [a], outputs: [n]}\n"
                        "  - {calculator: TestShowUnion, inputs: [n], outputs: [s]}\n"
                        "  - {calculator: TestShowUnion, inputs: [a], outputs: [t]}\n")
    got = []
    g.observe("s", lambda p: got.append(p.value))
    g.observe("t", lambda p: got.append(p.value))
    g.start()
    g.add_packet("a", 4, 0)
    g.close_all_inputs()
    g.wait(30)
    assert sorted(got) == ["<4>", "<8>"]


def test_options_are_validated_by_their_annotations_of_any_type():
    def gated(value: int, *, factor: int = 2, payload: Payload | None = None) -> int:
        return value

    cls = calculator(gated, register=False)
    assert cls.__doc__ == ""  # no docstring: an empty one
    with pytest.raises(Exception, match="valid integer"):
        cls.Options(factor="lots")
    p = Payload()
    assert cls.Options(payload=p).payload is p  # a class pydantic does not know is checked with isinstance
    with pytest.raises(Exception, match="instance of Payload"):
        cls.Options(payload=3)


def test_no_annotation_or_none_is_any():
    def f(value, other=None, *, opt=3):
        return None

    cls = calculator(f, register=False)
    assert cls.inputs["VALUE"].type is Any and not cls.inputs["VALUE"].optional
    assert cls.inputs["OTHER"].type is Any and cls.inputs["OTHER"].optional  # a None default: optional
    assert cls.outputs["OUT"].type is Any
    assert cls.Options.model_fields["opt"].annotation is typing.Any and cls.Options().opt == 3


def test_a_calculator_without_options_has_none_and_star_args_are_refused():
    def plain(value: int) -> int:
        return value

    assert calculator(plain, register=False).Options is None

    def star(*values):
        return None

    def stars(value, **kw):
        return None

    for fn in (star, stars):
        with pytest.raises(TypeError) as ei:
            calculator(fn, register=False)
        assert str(ei.value) == f"@calculator {fn.__name__}: *args/**kwargs are not supported"


def test_declared_outputs():
    def split(value: int):
        return {"EVEN": value} if value % 2 == 0 else {"ODD": value, "EVEN": None}

    cls = calculator(split, outputs={"EVEN": int, "ODD": list[int]}, register=False)
    assert list(cls.outputs) == ["EVEN", "ODD"]
    assert (cls.outputs["EVEN"].type, cls.outputs["ODD"].type) == (int, list)


def test_a_function_calculator_runs_with_its_options_and_optional_inputs():
    def add(a: int, b: int | None = None, *, factor: int = 1, offset: int = 0) -> int | None:
        if a < 0:
            return None  # emits nothing
        return (a + (b or 0)) * factor + offset

    cls = calculator(add, name="TestAddInside", register=False)
    out = run_calculator(cls, inputs={"A": [(0, 1), (10, 2), (20, -1)], "B": [(0, 5)]},
                         options={"factor": 3, "offset": 1})
    assert out == {"OUT": [(0, 19), (10, 7)]}  # b absent at 10: None; -1: nothing
    assert cls.name == "TestAddInside" and registry.find("TestAddInside") is cls  # run_calculator registered it
    # B left unconnected: the function gets None for it
    assert run_calculator(cls, inputs={"A": [(0, 4)]}, options={"factor": 2}) == {"OUT": [(0, 8)]}


def test_a_function_with_several_outputs_returns_a_dict_and_none_values_are_skipped():
    def split(value: int):
        return {"EVEN": value} if value % 2 == 0 else {"ODD": value, "EVEN": None}

    cls = calculator(split, outputs={"EVEN": int, "ODD": int}, name="TestSplitInside", register=False)
    assert run_calculator(cls, inputs={"VALUE": [(0, 2), (1, 3), (2, 4)]}) == {
        "EVEN": [(0, 2), (2, 4)], "ODD": [(1, 3)]}


def _failure(cls, values, **kw) -> str:
    with pytest.raises(GraphRunError) as ei:
        run_calculator(cls, inputs={"VALUE": [(i, v) for i, v in enumerate(values)]}, **kw)
    return str(ei.value.cause)


def test_the_first_result_is_checked_against_the_declared_outputs():
    def make(kind):
        def wrong(value: int):
            return {"dict": {"NOPE": 1}, "list": [value], "none_then_bad": value}[kind]

        return wrong

    several = {"A": int, "B": Payload}
    cls = calculator(make("list"), outputs=several, name="TestWrongList", register=False)
    assert _failure(cls, [1]) == "TestWrongList: declares outputs A, B, so it returns a dict {tag: value}; got list"
    cls = calculator(make("dict"), outputs=several, name="TestWrongTag", register=False)
    assert _failure(cls, [1]) == "TestWrongTag: returned output 'NOPE', which it does not declare (A, B)"

    def typed(value: int) -> Payload:
        return value

    cls = calculator(typed, name="TestWrongType", register=False)
    assert _failure(cls, [1]) == "TestWrongType: output OUT is declared Payload, the function returned int"

    class Image:  # a port type named Image gets the hint to wrap the array
        pass

    def image(value: int) -> Image:
        return [value]

    image.__annotations__["return"] = Image
    cls = calculator(image, name="TestWrongImage", register=False)
    assert _failure(cls, [1]) == ("TestWrongImage: output OUT is declared Image, the function returned list "
                                  "(wrap the array: Image(array, 'RGB'))")


def test_results_that_fit_pass_and_only_the_first_is_checked():
    def special(value: int) -> Payload:
        return Special() if value == 0 else value  # a subclass fits; later ones are not checked

    cls = calculator(special, name="TestSubclassResult", register=False)
    out = run_calculator(cls, inputs={"VALUE": [(0, 0), (1, 5)]})
    assert [type(v) for _, v in out["OUT"]] == [Special, int]

    def anything(value):
        return {"A": value, "B": None}

    cls = calculator(anything, outputs={"A": Any, "B": Payload}, name="TestAnyResult", register=False)
    assert run_calculator(cls, inputs={"VALUE": [(0, "text")]}) == {"A": [(0, "text")], "B": []}


def test_register_true_registers_under_the_name():
    def tripled_inside(value: int) -> int:
        return 3 * value

    cls = calculator(tripled_inside)
    assert registry.get("TripledInside") is cls and cls.name == "TripledInside"
    assert "TripledInside" in registry.names()


def test_stop_the_base_class_and_type_names():
    assert repr(STOP) == "STOP"

    class Bare(Calculator):
        pass

    with pytest.raises(NotImplementedError) as ei:
        Bare().process(None)
    assert str(ei.value) == "Bare.process is not implemented"
    assert Bare.is_source() and not calculator(lambda value: value, name="L", register=False).is_source()
    assert (type_name(Any), type_name(int), type_name(Payload)) == ("Any", "int", "Payload")
    assert type_name("Frame") == "Frame"  # no __name__: as written (a string annotation)


@pytest.mark.parametrize("out_type, in_type, ok", [
    (int, int, True), (Special, Payload, True), (Payload, Special, False), (int, str, False),
    (Any, str, True), (str, Any, True), (object, int, True), (int, object, True),
    (int, list[int], True),  # issubclass cannot tell: let it through
])
def test_types_compatible(out_type, in_type, ok):
    assert types_compatible(out_type, in_type) is ok
