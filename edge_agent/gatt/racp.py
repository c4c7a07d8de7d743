"""Record Access Control Point (0x2A52), as used by the Glucose, PLX and CGM services.

Every message is ``op code u8 | operator u8 | operand...``. The agent writes requests
(``01 01`` = report stored records, all records) and receives, by indication:

- Response Code (op 0x06, operator 0x00 "null"): ``06 00 <request op code> <response code>``;
- Number of Stored Records Response (op 0x05, operator 0x00): ``05 00 <count u16>``.

Requests are decoded too, so a field technician can paste what the agent wrote. Filtered
request operands (filter type + values) are kept as raw bytes: the agent only ever uses
"all records" and "last record".
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.gatt.codec import Reader

__all__ = [
    "RACP",
    "RACP_OPCODES",
    "RACP_OPERATORS",
    "RACP_RESPONSE_CODES",
    "RacpMessage",
    "decode_racp",
]

RACP = "2A52"

RACP_OPCODES: dict[int, str] = {
    0x01: "report_stored_records",
    0x02: "delete_stored_records",
    0x03: "abort_operation",
    0x04: "report_number_of_stored_records",
    0x05: "number_of_stored_records_response",
    0x06: "response_code",
}
RACP_OPERATORS: dict[int, str] = {
    0x00: "null",
    0x01: "all_records",
    0x02: "less_than_or_equal_to",
    0x03: "greater_than_or_equal_to",
    0x04: "within_range_of",
    0x05: "first_record",
    0x06: "last_record",
}
RACP_RESPONSE_CODES: dict[int, str] = {
    0x01: "success",
    0x02: "op_code_not_supported",
    0x03: "invalid_operator",
    0x04: "operator_not_supported",
    0x05: "invalid_operand",
    0x06: "no_records_found",
    0x07: "abort_unsuccessful",
    0x08: "procedure_not_completed",
    0x09: "operand_not_supported",
}

_NUMBER_OF_RECORDS = 0x05
_RESPONSE_CODE = 0x06


@dataclass(frozen=True, slots=True)
class RacpMessage:
    op_code: int
    operator: int
    operand: bytes
    """The raw operand; parsed into the fields below for the two responses."""
    request_op_code: int | None = None
    """Response Code only: the op code being answered."""
    response_code: int | None = None
    """Response Code only; unknown codes are kept as their number."""
    number_of_records: int | None = None
    """Number of Stored Records Response only."""

    @property
    def op_code_name(self) -> str:
        return RACP_OPCODES.get(self.op_code, "reserved")

    @property
    def response_code_name(self) -> str | None:
        if self.response_code is None:
            return None
        return RACP_RESPONSE_CODES.get(self.response_code, "reserved")

    @property
    def succeeded(self) -> bool:
        """True for "success" and for "no records found" (an empty store is not a failure)."""
        return self.response_code in (0x01, 0x06)


def decode_racp(data: bytes) -> RacpMessage:
    r = Reader(RACP, data)
    op_code = r.u8("op code")
    if op_code not in RACP_OPCODES:
        raise r.fail(f"op code 0x{op_code:02X} is reserved", 0)
    operator = r.u8("operator")
    operand = r.data[r.offset :]
    if op_code == _RESPONSE_CODE:
        if operator != 0x00:
            raise r.fail("a response code must use the null operator", 1)
        request = r.u8("request op code")
        code = r.u8("response code value")
        r.end()
        return RacpMessage(op_code, operator, operand, request_op_code=request, response_code=code)
    if op_code == _NUMBER_OF_RECORDS:
        if operator != 0x00:
            raise r.fail("a number-of-records response must use the null operator", 1)
        count = r.u16("number of records")
        r.end()
        return RacpMessage(op_code, operator, operand, number_of_records=count)
    return RacpMessage(op_code, operator, operand)
