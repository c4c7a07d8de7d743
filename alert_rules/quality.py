"""The device quality flags the platform knows, and which of them make a reading an artefact.

The names are the snake_case flags the edge agent's decoders emit (``edge_agent/gatt``): the
Bluetooth SIG Blood Pressure status bits, the PLX measurement and device/sensor status bits,
the Glucose sensor status annunciation and the Nonin status byte. ``nearcare rules replay``
rejects a flag outside this list (a typo would otherwise silently make an artefact count).

An **artefact** flag says the number itself is not to be trusted (signal, perfusion, motion,
cuff). Such a reading never opens, worsens or resolves a clinical alert and is left out of the
citizen's baseline; it is still stored and shown. Battery flags are technical, not artefacts.
"""

from __future__ import annotations

BLOOD_PRESSURE_FLAGS = frozenset({
    "body_movement", "cuff_loose", "irregular_pulse", "improper_position",
    "pulse_rate_above_upper_limit", "pulse_rate_below_lower_limit",
})
PLX_FLAGS = frozenset({
    "measurement_ongoing", "early_estimated_data", "validated_data", "fully_qualified_data",
    "data_from_measurement_storage", "data_for_demonstration", "data_for_testing", "calibration_ongoing",
    "measurement_unavailable", "questionable_measurement", "invalid_measurement",
    "extended_display_update_ongoing", "equipment_malfunction", "signal_processing_irregularity",
    "inadequate_signal", "poor_signal", "low_perfusion", "erratic_signal", "nonpulsatile_signal",
    "questionable_pulse", "signal_analysis_ongoing", "sensor_interference", "sensor_unconnected_to_user",
    "unknown_sensor_connected", "sensor_displaced", "sensor_malfunctioning", "sensor_disconnected",
})
GLUCOSE_FLAGS = frozenset({
    "low_battery", "sensor_malfunction", "sample_size_insufficient", "strip_insertion_error",
    "strip_type_incorrect", "result_too_high", "result_too_low", "sensor_temperature_too_high",
    "sensor_temperature_too_low", "strip_pulled_too_soon", "general_device_fault", "time_fault",
})
NONIN_FLAGS = frozenset({"weak_signal", "searching", "low_battery", "sensor_displaced"})
OTHER_FLAGS = frozenset({"battery_low"})

KNOWN_FLAGS: frozenset[str] = BLOOD_PRESSURE_FLAGS | PLX_FLAGS | GLUCOSE_FLAGS | NONIN_FLAGS | OTHER_FLAGS

ARTEFACT_FLAGS: frozenset[str] = frozenset({
    # blood pressure: the cuff or the arm was wrong (SIG BPS status bits)
    "body_movement", "cuff_loose", "improper_position",
    # oximetry: the signal was not good enough (SIG PLX device/sensor status, Nonin status)
    "low_perfusion", "poor_signal", "inadequate_signal", "erratic_signal", "nonpulsatile_signal",
    "questionable_pulse", "questionable_measurement", "invalid_measurement", "measurement_unavailable",
    "signal_processing_irregularity", "sensor_interference", "sensor_displaced", "sensor_disconnected",
    "sensor_unconnected_to_user", "sensor_malfunctioning", "equipment_malfunction", "early_estimated_data",
    "weak_signal", "searching",
    # glucose strips
    "sensor_malfunction", "sample_size_insufficient", "strip_insertion_error", "strip_type_incorrect",
    "strip_pulled_too_soon", "general_device_fault",
})


def is_artefact(quality: tuple[str, ...] | list[str] | frozenset[str]) -> bool:
    return not ARTEFACT_FLAGS.isdisjoint(quality)
