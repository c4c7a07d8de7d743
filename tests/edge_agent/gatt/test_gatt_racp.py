"""Record Access Control Point 0x2A52."""

from __future__ import annotations

import pytest

from edge_agent.gatt.errors import GattDecodeError
from edge_agent.gatt.racp import RacpMessage, decode_racp

# Vectors: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/java/no/
# nordicsemi/android/ble/common/callback/RecordAccessControlPointDataCallbackTest.java.


def test_response_success() -> None:
    # onRecordAccessOperationCompleted: 06 00 01 01.
    m = decode_racp(bytes.fromhex("06 00 01 01"))
    assert m == RacpMessage(
        op_code=0x06, operator=0x00, operand=b"\x01\x01", request_op_code=0x01, response_code=0x01
    )
    assert (m.op_code_name, m.response_code_name, m.succeeded) == (
        "response_code",
        "success",
        True,
    )


def test_response_no_records_found() -> None:
    # onRecordAccessOperationCompletedWithNoRecords: 06 00 01 06.
    m = decode_racp(bytes.fromhex("06 00 01 06"))
    assert m == RacpMessage(0x06, 0x00, b"\x01\x06", request_op_code=0x01, response_code=0x06)
    assert (m.response_code_name, m.succeeded) == ("no_records_found", True)


def test_response_op_code_not_supported() -> None:
    # onRecordAccessOperationError_opCodeNotSupported: 06 00 0C 02.
    m = decode_racp(bytes.fromhex("06 00 0c 02"))
    assert m == RacpMessage(0x06, 0x00, b"\x0c\x02", request_op_code=0x0C, response_code=0x02)
    assert (m.response_code_name, m.succeeded) == ("op_code_not_supported", False)


def test_response_unknown_code_is_kept() -> None:
    # onRecordAccessOperationError_unknownErrorCode: 06 00 01 0A.
    m = decode_racp(bytes.fromhex("06 00 01 0a"))
    assert m == RacpMessage(0x06, 0x00, b"\x01\x0a", request_op_code=0x01, response_code=0x0A)
    assert m.response_code_name == "reserved"


def test_number_of_records() -> None:
    # onNumberOfRecordsReceived_uint16: 05 00 02 01 -> 258.
    m = decode_racp(bytes.fromhex("05 00 02 01"))
    assert m == RacpMessage(0x05, 0x00, b"\x02\x01", number_of_records=258)


def test_report_all_records_request() -> None:
    # The request CLINICAL.md says the agent writes ("report all", 01 01).
    m = decode_racp(bytes.fromhex("01 01"))
    assert m == RacpMessage(0x01, 0x01, b"")
    assert m.op_code_name == "report_stored_records"


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("06 01 01", 1),  # onInvalidDataReceived_invalidOperator: response with operator 1
        ("05 00 03 02 01", 4),  # onNumberOfRecordsReceived_unsupportedLength: u24 count
        ("06 00 01", 3),  # response code value missing
        ("07 00", 0),  # reserved op code
        ("", 0),
    ],
)
def test_malformed(hex_: str, offset: int) -> None:
    with pytest.raises(GattDecodeError) as err:
        decode_racp(bytes.fromhex(hex_))
    assert (err.value.characteristic, err.value.offset) == ("2A52", offset)
