"""What is read-only once sent (pipeline/readonly.py), seen by whoever receives the packet: the
arrays of a payload (an array, the ``ndarray`` fields of a dataclass, the items of a tuple, list or
dict of at most ``MAX_ITEMS``), frozen in place, never copied; everything else left as it is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline import Any, Calculator, Input, Output, register
from pipeline.readonly import MAX_ITEMS, freeze
from pipeline.testing import GraphRun


@register
class TestForward(Calculator):
    """Forwards each payload as it is."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


GRAPH = {"name": "frozen", "inputs": ["in"],
         "nodes": [{"calculator": "TestForward", "inputs": {"IN": "in"}, "outputs": {"OUT": "out"}}]}


def _fresh(base: type) -> type:
    """A new subclass of ``base``: a payload type never seen before, so that its freezer is looked up
    here and not remembered from an earlier test (``FREEZERS`` is filled on first sight of a type)."""
    return type(f"Fresh{base.__name__.title()}", (base,), {})


def _fresh_record() -> type:
    """A new dataclass type like ``_Record``."""

    @dataclasses.dataclass
    class Record:
        image: np.ndarray
        mask: np.ndarray | None
        extra: object
        count: int = 0

    return Record


def _send(*payloads):
    """Feeds each payload through a node; returns what the observer of its output received."""
    with GraphRun(GRAPH, collect=["out"]) as r:
        out = r.run({"in": list(enumerate(payloads))})["out"]
    return [v for _, v in out]


class _SubArray(np.ndarray):
    pass


@dataclasses.dataclass
class _Record:
    image: np.ndarray
    mask: np.ndarray | None
    extra: object  # not annotated ndarray: left alone even when it holds one
    count: int = 0


@dataclasses.dataclass
class _Scalars:
    a: int
    b: str


def test_a_sent_array_is_the_same_array_made_read_only():
    a = np.zeros((2, 3), np.uint8)
    (got,) = _send(a)
    assert got is a  # not copied
    assert not a.flags.writeable  # the producer's own array too: it belongs to the graph now
    with pytest.raises(ValueError, match="read-only"):
        got[0, 0] = 1


def test_an_array_subclass_is_frozen():
    a = np.zeros(4).view(_SubArray)
    (got,) = _send(a)
    assert got is a and not a.flags.writeable


def test_the_ndarray_fields_of_a_dataclass_are_frozen_and_only_those():
    image, mask, extra = np.zeros(3), np.ones(3).view(_SubArray), np.zeros(2)
    (got,) = _send(_Record(image, mask, extra, 2))
    assert got.image is image and not image.flags.writeable
    assert not mask.flags.writeable  # a subclass in an ndarray field
    assert extra.flags.writeable  # a field not annotated ndarray
    # a None in an ndarray field, then the same type again (its freezer is remembered)
    later = np.zeros(2)
    _send(_Record(np.zeros(1), None, None), _Record(later, None, None))
    assert not later.flags.writeable


def test_a_dataclass_without_array_fields_is_left_alone():
    arr = np.zeros(2)
    (got,) = _send(_Scalars(1, "x"))
    assert got == _Scalars(1, "x")
    freeze(_Scalars(2, "y"))
    freeze(arr.tolist())
    assert arr.flags.writeable


@pytest.mark.parametrize("kind", ["tuple", "list", "dict"])
def test_a_container_of_exactly_max_items_is_walked_and_one_more_is_not(kind):
    def make(xs):
        return {"tuple": tuple, "list": list}.get(kind, lambda v: {i: x for i, x in enumerate(v)})(xs)

    walked = [np.zeros(1) for _ in range(MAX_ITEMS)]
    skipped = [np.zeros(1) for _ in range(MAX_ITEMS + 1)]
    _send(make(walked), make(skipped))
    assert [a.flags.writeable for a in walked] == [False] * MAX_ITEMS
    assert [a.flags.writeable for a in skipped] == [True] * (MAX_ITEMS + 1)


def test_mixed_items_freeze_the_arrays_and_pass_the_rest():
    a, b = np.zeros(2), np.ones(2)
    (got,) = _send((a, 3, "s", None, 1.5, {"x": b}))
    assert got[1:5] == (3, "s", None, 1.5)
    assert not a.flags.writeable and not b.flags.writeable


def test_scalars_pass_unchanged():
    assert _send(7, "text", b"raw", 2.5, True, None) == [7, "text", b"raw", 2.5, True, None]


def test_freeze_is_what_sending_does():
    a = np.zeros(2)
    r = _Record(np.zeros(1), np.zeros(1), a)
    freeze(r)
    assert not r.image.flags.writeable and not r.mask.flags.writeable and a.flags.writeable
    b = np.zeros(3)
    freeze(b)
    freeze(b)  # already read-only: stays so, no error
    assert not b.flags.writeable
    c = np.zeros(3)
    freeze([c])
    assert not c.flags.writeable


def test_freeze_finds_the_freezer_of_a_type_it_never_saw():
    @dataclasses.dataclass
    class Fresh:  # a new type: no freezer remembered for it yet
        data: np.ndarray

    a = np.zeros(2)
    freeze(Fresh(a))
    assert not a.flags.writeable
    b = np.zeros(2)
    freeze(Fresh(b))  # the remembered freezer
    assert not b.flags.writeable


def test_first_sight_of_each_kind_of_payload_type():
    """Each test above may meet a type an earlier one already met; here every type is new."""
    arr = np.zeros(3).view(_fresh(np.ndarray))
    Record = _fresh_record()
    image, extra = np.zeros(2), np.zeros(2)
    in_tuple, in_list, in_dict = np.zeros(1), np.zeros(1), np.zeros(1)
    got = _send(arr, Record(image, None, extra), _fresh(tuple)((in_tuple, 1)), _fresh(list)([in_list]),
                _fresh(dict)(k=in_dict), _fresh(int)(5), _fresh(str)("s"))
    assert got[0] is arr and not arr.flags.writeable
    assert not image.flags.writeable and extra.flags.writeable
    assert not in_tuple.flags.writeable and not in_list.flags.writeable and not in_dict.flags.writeable
    assert got[5] == 5 and got[6] == "s"


def test_items_of_types_never_seen_are_frozen():
    Record = _fresh_record()
    inner, sub = np.zeros(1), np.zeros(1).view(_fresh(np.ndarray))
    r = Record(np.zeros(1), None, None)
    _send([Record(inner, None, None), sub], {"r": r})
    assert not inner.flags.writeable and not sub.flags.writeable and not r.image.flags.writeable
    big = _fresh(list)([np.zeros(1) for _ in range(MAX_ITEMS + 1)])
    _send(big)
    assert all(a.flags.writeable for a in big)  # too many items: not walked, even on first sight


def test_a_fresh_dataclass_freezes_only_its_ndarray_fields_including_subclasses():
    Record = _fresh_record()
    image, mask, extra = np.zeros(3), np.ones(3).view(_fresh(np.ndarray)), np.zeros(2)
    (got,) = _send(Record(image, mask, extra, 2))
    assert got.image is image and not image.flags.writeable and not mask.flags.writeable
    assert extra.flags.writeable and got.count == 2

    @dataclasses.dataclass
    class NoArrays:
        a: int
        b: object

    arr = np.zeros(2)
    assert _send(NoArrays(1, arr))[0].b is arr and arr.flags.writeable


def test_an_ndarray_field_holding_something_else_is_left_as_it_is():
    Record = _fresh_record()
    items, image = [1, 2], np.zeros(1)
    (got,) = _send(Record(items, None, None))
    assert got.image is items
    (got,) = _send(Record(image, (3,), None))  # the same type again: its remembered freezer
    assert got.mask == (3,) and not image.flags.writeable
