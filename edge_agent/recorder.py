"""From a capture to durable measurements: mint ids, judge the clock, append to the spool.

:func:`to_measurements` is pure; :class:`Recorder` is the sink the session recipes call. The id
is minted here, at the moment of reading, and the row is in the spool before the recipe goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from edge_agent.devices.recipes import Capture
from edge_agent.errors import SpoolFullError
from edge_agent.gatt import Reading
from edge_agent.spool import Spool
from vitals.kinds import spec
from vitals.wire import Device, Measurement, RawCharacteristic, new_measurement_id

log = logging.getLogger(__name__)

# A device clock ahead of the agent's by more than this is wrong; records downloaded with RACP
# may be old, but not older than the longest a device keeps them.
CLOCK_AHEAD_TOLERANCE = timedelta(minutes=10)
CLOCK_BEHIND_LIMIT = timedelta(days=400)


def measured_at(reading: Reading, received_at: datetime, zone: tzinfo) -> tuple[datetime, bool, tuple[str, ...]]:
    """(measured_at, device_clock_trusted, extra quality flags) for one reading."""
    if not reading.clock_trusted or reading.device_time is None:
        return received_at, False, ()
    device = reading.device_time.replace(tzinfo=zone)
    if device - received_at > CLOCK_AHEAD_TOLERANCE or received_at - device > CLOCK_BEHIND_LIMIT:
        return received_at, False, ("device_clock_implausible",)
    return device, True, ()


def to_measurements(capture: Capture, *, device: Device, zone: tzinfo) -> list[Measurement]:
    out = []
    raw = RawCharacteristic(characteristic=capture.characteristic, hex=capture.data.hex())
    for r in capture.readings:
        at, trusted, flags = measured_at(r, capture.received_at, zone)
        quality = r.quality + flags
        if r.values.get(spec(r.kind).primary.name) is None:
            quality += ("value_missing",)
        out.append(
            Measurement(
                id=new_measurement_id(),
                kind=r.kind,
                values=r.values,
                unit=spec(r.kind).unit,
                measured_at=at,
                device_clock_trusted=trusted,
                received_at=capture.received_at,
                device=device,
                user_index=r.user_index,
                quality=tuple(dict.fromkeys(quality)),
                raw=raw if len(raw.hex) <= 1024 else None,
            )
        )
    return out


class Recorder:
    """The recipes' sink: every capture becomes spooled measurements, or a loud refusal."""

    def __init__(self, spool: Spool, *, zone: tzinfo, on_appended: Callable[[int], None] | None = None,
                 on_full: Callable[[SpoolFullError], None] | None = None) -> None:
        self.spool = spool
        self.zone = zone
        self.on_appended = on_appended
        self.on_full = on_full
        self.refused = 0

    def sink_for(self, device: Device) -> Callable[[Capture], None]:
        def sink(capture: Capture) -> None:
            # A full spool is already logged with the raw bytes and shown in the status; the
            # session goes on so that the device is not left hanging.
            with contextlib.suppress(SpoolFullError):
                self.record(capture, device=device)

        return sink

    def record(self, capture: Capture, *, device: Device) -> list[Measurement]:
        measurements = to_measurements(capture, device=device, zone=self.zone)
        try:
            self.spool.append_many(measurements)
        except SpoolFullError as exc:
            self.refused += len(measurements)
            log.error("%s: %s; readings %s from %s NOT recorded (raw %s %s)", device.address, exc,
                      [str(m.id) for m in measurements], capture.received_at.isoformat(),
                      capture.characteristic, capture.data.hex())
            if self.on_full is not None:
                self.on_full(exc)
            raise
        if self.on_appended is not None:
            self.on_appended(len(measurements))
        return measurements
