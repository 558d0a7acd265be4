"""Status codes and their exceptions: one class per code, whichever way it is built."""

from __future__ import annotations

import pytest

from rpcnet import errors
from rpcnet.errors import RpcError, StatusCode, error_for_status

ERROR_CODES = [code for code in StatusCode if code is not StatusCode.OK]


@pytest.mark.parametrize("code", ERROR_CODES, ids=lambda c: c.name)
def test_each_code_has_its_class_and_every_way_of_building_it_agrees(code):
    cls = getattr(errors, "".join(p.capitalize() for p in code.name.split("_")) + "Error")
    assert cls.code is code and issubclass(cls, RpcError)
    from_wire = error_for_status(int(code), "m", details={"k": 1}, trailers={"t": 2})
    by_code = RpcError("m", code=code)
    assert type(from_wire) is cls and type(by_code) is cls
    assert (from_wire.message, from_wire.details, from_wire.trailers) == ("m", {"k": 1}, {"t": 2})
    assert str(by_code) == f"{code.name}: m"


def test_a_code_from_a_newer_peer_is_unknown_and_keeps_the_number():
    error = error_for_status(99, "what")
    assert error.code is StatusCode.UNKNOWN
    assert error.message == "unknown status code 99: what"


def test_ok_is_not_an_error():
    with pytest.raises(ValueError, match="OK is not an error status"):
        error_for_status(0)
