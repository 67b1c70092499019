"""Error mapping: a contract violation is the client's fault and names the input; anything else names the stage."""

from __future__ import annotations

from hy3d_client.contract import ContractError

from hy3d_serving.errors import MAX_ERROR_DETAIL_CHARS, EngineError, ErrorKind, error_reply


def test_contract_error_becomes_invalid_argument_naming_stage_and_input():
    reply = error_reply("preprocess", ContractError("IMAGE", "expected C in {3, 4}, got 5"))
    assert reply.kind is ErrorKind.INVALID_ARGUMENT
    assert reply.message == "preprocess: invalid input IMAGE: expected C in {3, 4}, got 5"


def test_unexpected_exception_becomes_internal_naming_stage_and_exception_type():
    reply = error_reply("shape_dit", ZeroDivisionError("division by zero"))
    assert reply.kind is ErrorKind.INTERNAL
    assert reply.message == "shape_dit failed: ZeroDivisionError: division by zero"


def test_engine_error_is_reported_without_the_exception_type():
    reply = error_reply("shape_dit", EngineError("no surface"))
    assert reply.message == "shape_dit failed: no surface"


def test_long_details_are_cut():
    reply = error_reply("paint_pbr", RuntimeError("x" * 10_000))
    assert len(reply.message) < MAX_ERROR_DETAIL_CHARS + 100
    assert reply.message.endswith("...")
