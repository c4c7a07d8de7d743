"""From decoded characteristics to health readings in the wire contract's canonical units.

:func:`readings_from` is the one bridge between the GATT decoders and
:class:`vitals.wire.Measurement`. It is pure: it mints no ids, reads no clock and attaches no
time zone. Decisions made here, once, so that every caller agrees:

- Values are converted to the kind's canonical UCUM unit with
  :func:`vitals.kinds.to_canonical` (kPa -> mm[Hg], lb -> kg, degF -> Cel, glucose -> mmol/L).
- Special values (NaN, NRes, +/-INF) and "missing" markers become ``None`` values, never
  numbers; the reading is still returned so the caller can record the missed measurement.
- ``device_time`` is the naive device-local time as decoded: device clocks carry no zone,
  so the caller attaches the agent's zone (and uses its own receipt time when
  ``clock_trusted`` is False).
- ``clock_trusted`` is False when there is no timestamp, its date is "unknown", the device
  says its clock is not set (PLX flag bit4) or reports a time fault (glucose).
- ``user_index`` is the device's user slot; 0xFF ("unknown user") becomes None.
- A blood pressure measurement with a pulse rate yields two readings (blood_pressure, then
  pulse); an oximeter reading yields spo2 then pulse.
- Intermediate cuff pressure, RACP, feature characteristics and Date Time yield nothing:
  they are protocol traffic, not health data.
- A weight measurement flagged unsuccessful (0xFFFF) yields nothing: the scale itself says
  there is no weight, and an empty reading would look like a measured one downstream.
- A glucose record without a concentration yields nothing, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge_agent.gatt.berrymed import Bm1000Frame, Bm1000Packet
from edge_agent.gatt.blood_pressure import (
    USER_ID_UNKNOWN,
    BloodPressureMeasurement,
    BloodPressureStatus,
    PressureUnit,
    PulseRateRange,
)
from edge_agent.gatt.codec import DateTime, flag_names
from edge_agent.gatt.glucose import GlucoseMeasurement, GlucoseSensorStatus, GlucoseUnit
from edge_agent.gatt.nonin import NoninContinuous, NoninStatus
from edge_agent.gatt.plx import (
    PlxContinuous,
    PlxDeviceSensorStatus,
    PlxMeasurementStatus,
    PlxSpotCheck,
)
from edge_agent.gatt.registry import Decoded
from edge_agent.gatt.thermometer import TemperatureMeasurement, TemperatureUnit
from edge_agent.gatt.weight import WeightMeasurement, WeightUnit
from vitals.kinds import MeasurementKind, to_canonical

__all__ = ["Reading", "readings_from"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One health reading taken from one characteristic value.

    Frozen but not hashable: ``values`` is a dict, as in :class:`vitals.wire.Measurement`.
    """

    kind: MeasurementKind
    values: dict[str, float | None]
    """Component name (from :data:`vitals.kinds.KINDS`) -> value in the canonical unit."""
    device_time: datetime | None
    """Naive device-local time; the caller attaches the agent's zone."""
    clock_trusted: bool
    quality: tuple[str, ...] = ()
    """The device's own quality flags, snake_case."""
    user_index: int | None = None


_SPO2 = MeasurementKind.SPO2
_PULSE = MeasurementKind.PULSE


def _time(ts: DateTime | None) -> tuple[datetime | None, bool]:
    value = None if ts is None else ts.value
    return value, value is not None


def _user(user_id: int | None) -> int | None:
    return None if user_id is None or user_id == USER_ID_UNKNOWN else user_id


def _convert(kind: MeasurementKind, value: float | None, unit: str) -> float | None:
    return None if value is None else to_canonical(kind, value, unit)


def _bp_quality(status: BloodPressureStatus | None) -> tuple[str, ...]:
    if status is None:
        return ()
    flags = [
        name
        for name, on in (
            ("body_movement", status.body_movement),
            ("cuff_loose", status.cuff_loose),
            ("irregular_pulse", status.irregular_pulse),
            ("improper_position", status.improper_position),
        )
        if on
    ]
    if status.pulse_rate_range is PulseRateRange.EXCEEDS_UPPER_LIMIT:
        flags.append("pulse_rate_above_upper_limit")
    elif status.pulse_rate_range is PulseRateRange.BELOW_LOWER_LIMIT:
        flags.append("pulse_rate_below_lower_limit")
    return tuple(flags)


def _blood_pressure(m: BloodPressureMeasurement) -> tuple[Reading, ...]:
    kind = MeasurementKind.BLOOD_PRESSURE
    unit = "kPa" if m.unit is PressureUnit.KPA else "mm[Hg]"
    device_time, trusted = _time(m.timestamp)
    quality = _bp_quality(m.status)
    user = _user(m.user_id)
    bp = Reading(
        kind=kind,
        values={
            "systolic": _convert(kind, m.systolic.value, unit),
            "diastolic": _convert(kind, m.diastolic.value, unit),
            "mean_arterial": _convert(kind, m.mean_arterial_pressure.value, unit),
        },
        device_time=device_time,
        clock_trusted=trusted,
        quality=quality,
        user_index=user,
    )
    if m.pulse_rate is None:
        return (bp,)
    pulse = Reading(
        kind=_PULSE,
        values={"pulse": m.pulse_rate.value},
        device_time=device_time,
        clock_trusted=trusted,
        quality=quality,
        user_index=user,
    )
    return bp, pulse


def _weight(m: WeightMeasurement) -> tuple[Reading, ...]:
    if not m.successful:
        return ()
    kind = MeasurementKind.WEIGHT
    unit = "[lb_av]" if m.unit is WeightUnit.LB else "kg"
    device_time, trusted = _time(m.timestamp)
    return (
        Reading(
            kind=kind,
            values={"weight": _convert(kind, m.weight, unit)},
            device_time=device_time,
            clock_trusted=trusted,
            user_index=_user(m.user_id),
        ),
    )


def _plx_quality(
    status: PlxMeasurementStatus | None, dss: PlxDeviceSensorStatus | None
) -> tuple[str, ...]:
    names: tuple[str, ...] = ()
    if status is not None:
        names += flag_names(status)
    if dss is not None:
        names += flag_names(dss)
    return names


def _oximeter(
    spo2: float | None,
    pulse: float | None,
    device_time: datetime | None,
    trusted: bool,
    quality: tuple[str, ...],
) -> tuple[Reading, ...]:
    return (
        Reading(_SPO2, {"spo2": spo2}, device_time, trusted, quality),
        Reading(_PULSE, {"pulse": pulse}, device_time, trusted, quality),
    )


def _plx_spot_check(m: PlxSpotCheck) -> tuple[Reading, ...]:
    device_time, trusted = _time(m.timestamp)
    quality = _plx_quality(m.measurement_status, m.device_and_sensor_status)
    if m.device_clock_not_set:
        trusted = False
        quality += ("device_clock_not_set",)
    return _oximeter(m.spo2.value, m.pulse_rate.value, device_time, trusted, quality)


def _plx_continuous(m: PlxContinuous) -> tuple[Reading, ...]:
    quality = _plx_quality(m.measurement_status, m.device_and_sensor_status)
    return _oximeter(m.spo2.value, m.pulse_rate.value, None, False, quality)


def _temperature(m: TemperatureMeasurement) -> tuple[Reading, ...]:
    kind = MeasurementKind.TEMPERATURE
    unit = "[degF]" if m.unit is TemperatureUnit.FAHRENHEIT else "Cel"
    device_time, trusted = _time(m.timestamp)
    return (
        Reading(
            kind=kind,
            values={"temperature": _convert(kind, m.temperature.value, unit)},
            device_time=device_time,
            clock_trusted=trusted,
        ),
    )


def _glucose(m: GlucoseMeasurement) -> tuple[Reading, ...]:
    if m.concentration is None:
        return ()
    kind = MeasurementKind.GLUCOSE
    value = m.concentration.value
    if value is not None:
        if m.unit is GlucoseUnit.MOL_PER_L:
            value = to_canonical(kind, value * 1000, "mmol/L")
        else:
            # kg/L -> mg/dL is x 1e5 (1 kg/L = 1e6 mg / 10 dL).
            value = to_canonical(kind, value * 100_000, "mg/dL")
    status = m.sensor_status
    quality = flag_names(status) if status is not None else ()
    trusted = m.timestamp is not None and (
        status is None or GlucoseSensorStatus.TIME_FAULT not in status
    )
    return (Reading(kind, {"glucose": value}, m.timestamp, trusted, quality),)


_NONIN_PROBLEMS = (
    (NoninStatus.WEAK_SIGNAL, "weak_signal"),
    (NoninStatus.SEARCHING, "searching"),
    (NoninStatus.LOW_BATTERY, "low_battery"),
)


def _nonin(m: NoninContinuous) -> tuple[Reading, ...]:
    quality = [name for bit, name in _NONIN_PROBLEMS if bit in m.status]
    if NoninStatus.CORRECT_CHECK not in m.status:
        # CorrectCheck clear: the finger is not placed correctly in the sensor.
        quality.append("sensor_displaced")
    spo2 = None if m.spo2 is None else float(m.spo2)
    pulse = None if m.pulse_rate is None else float(m.pulse_rate)
    return _oximeter(spo2, pulse, None, False, tuple(quality))


def _bm1000(frame: Bm1000Frame) -> tuple[Reading, ...]:
    quality = tuple(
        name
        for name, on in (
            ("no_signal", frame.no_signal),
            ("probe_unplugged", frame.probe_unplugged),
            ("no_finger", frame.no_finger),
            ("searching", frame.pulse_searching),
        )
        if on
    )
    spo2 = None if frame.spo2 is None else float(frame.spo2)
    pulse = None if frame.pulse_rate is None else float(frame.pulse_rate)
    return _oximeter(spo2, pulse, None, False, quality)


def readings_from(decoded: Decoded) -> tuple[Reading, ...]:
    """The health readings in one decoded characteristic value (possibly none).

    For a BM1000 packet only the latest frame counts: frames arrive ~100 a second and carry
    the same numbers; waiting for a stable value is the caller's job.
    """
    match decoded:
        case BloodPressureMeasurement():
            return _blood_pressure(decoded)
        case WeightMeasurement():
            return _weight(decoded)
        case PlxSpotCheck():
            return _plx_spot_check(decoded)
        case PlxContinuous():
            return _plx_continuous(decoded)
        case TemperatureMeasurement():
            return _temperature(decoded)
        case GlucoseMeasurement():
            return _glucose(decoded)
        case NoninContinuous():
            return _nonin(decoded)
        case Bm1000Packet():
            return _bm1000(decoded.latest)
        case _:
            return ()
