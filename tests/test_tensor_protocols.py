"""How trtfast reads tensors given by protocol (DLPack, __cuda_array_interface__) where no GPU
work runs: Signature.check, as sessions and the reference path read them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from dlpack_producer import FLAG_READ_ONLY, Producer

import trtfast
from trtfast import _core


def signature(profiles: list[tuple[int, int, int]]) -> Any:
    ranges = [((low, 4), (opt, 4), (high, 4)) for low, opt, high in profiles]
    return _core.Signature(
        [("x", "float32", (-1, 4), ranges)], [("y", "float32", (-1, 4))], len(ranges)
    )


class Interface:
    """An object with only __cuda_array_interface__ (version 3)."""

    def __init__(self, **fields: Any) -> None:
        self.__cuda_array_interface__ = {
            "shape": (0, 4),
            "typestr": "<f4",
            "data": (0, False),
            "version": 3,
            **fields,
        }


def test_a_check_asks_dlpack_producers_for_no_stream_and_a_versioned_capsule() -> None:
    producer = Producer(0, (0, 4), version=(1, 0))
    signature([(0, 1, 8)]).check({"x": producer}, 0)
    # -1: nothing to order (the array API forbids 0 as ambiguous); DLPack 1.x capsules asked for.
    assert producer.requests == [{"stream": -1, "max_version": (1, 0)}]
    assert producer.deleted == 1


def test_a_dlpack_tensor_of_another_major_version_is_refused_and_deleted() -> None:
    producer = Producer(0, (0, 4), version=(2, 0))
    with pytest.raises(
        trtfast.InputError,
        match=r"input 'x': its DLPack tensor has version 2\.0; expected major version 1",
    ):
        signature([(0, 1, 8)]).check({"x": producer}, 0)
    assert producer.deleted == 1  # never read, but handed back


def test_read_only_dlpack_inputs_are_read() -> None:
    producer = Producer(0, (0, 4), flags=FLAG_READ_ONLY)
    assert signature([(0, 1, 8)]).check({"x": producer}, 0) == 0


def test_masked_cuda_array_interface_arrays_are_refused() -> None:
    masked = Interface(mask=Interface())
    with pytest.raises(trtfast.InputError, match="input 'x': expected an array without a mask"):
        signature([(0, 1, 8)]).check({"x": masked}, 0)


def test_an_empty_array_without_memory_is_on_the_sessions_device() -> None:
    # data=0 points nowhere: the array takes the device of whoever reads it, here device 1.
    assert signature([(0, 1, 8)]).check({"x": Interface()}, 1) == 0
    with pytest.raises(trtfast.InputError, match=r"pointer is null, but its shape \[2, 4\]"):
        signature([(0, 1, 8)]).check({"x": Interface(shape=(2, 4))}, 1)
    with pytest.raises(trtfast.InputError, match="stream is 0, which the protocol forbids"):
        signature([(0, 1, 8)]).check({"x": Interface(stream=0)}, 1)


def test_the_current_profile_is_kept_while_it_accepts_the_shapes() -> None:
    # Sessions and the reference path choose alike, so parity checks compare one profile.
    two = signature([(1, 4, 8), (4, 8, 16)])
    six = {"x": np.zeros((6, 4), np.float32)}
    assert two.check(six, 0) == 0
    assert two.check(six, 0, current=1) == 1
    assert two.check({"x": np.zeros((12, 4), np.float32)}, 0, current=0) == 1
    assert two.check({"x": np.zeros((2, 4), np.float32)}, 0, current=1) == 0
