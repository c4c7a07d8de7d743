"""The errors a GATT decoder may raise: one root, one decode error.

Every decoder in :mod:`edge_agent.gatt` promises that malformed bytes raise
:class:`GattDecodeError` and nothing else, so the agent can log the raw bytes and move on
without a catch-all ``except Exception`` that would also swallow real bugs.
"""

from __future__ import annotations


class GattError(Exception):
    """Root of every error raised by :mod:`edge_agent.gatt`."""


class GattDecodeError(GattError):
    """Bytes that do not decode as the characteristic they claim to be.

    ``characteristic`` names what was being decoded (``"2A35"``, ``"nonin-continuous"``…),
    ``offset`` is the byte offset where decoding failed, ``reason`` the human sentence.
    """

    def __init__(self, characteristic: str, offset: int, reason: str) -> None:
        self.characteristic = characteristic
        self.offset = offset
        self.reason = reason
        super().__init__(f"{characteristic} at byte {offset}: {reason}")

    def __reduce__(self) -> tuple[type[GattDecodeError], tuple[str, int, str]]:
        # Exceptions with a custom __init__ do not pickle by default; the agent may hand
        # errors across a process boundary (spool worker), so keep them picklable.
        return (type(self), (self.characteristic, self.offset, self.reason))
