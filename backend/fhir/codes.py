"""Code systems and code tables of the PHD IG and FUT that the exports use (one place, no I/O).

Sources: ../shared/standards/phd (PhdBaseObservation, PhdDevice, PhgDevice, the ASN1ToHL7 code
system of the compiled package) and ../shared/standards/fut (ehealth-observation, the
observation-codes value set, the quality and resolved-timing code systems).
"""

from __future__ import annotations

from vitals.kinds import MeasurementKind

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD_CATEGORY = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
GATEWAY_EXT = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
COINCIDENT_EXT = "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MSMT_STATUS = "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ASN1 = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
CONTINUA_IDS = "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
BT_MAC_SYSTEM = "http://hl7.org/fhir/sid/eui-48/bluetooth"
SYSID_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
PHD_ID_SYSTEM = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
UUID_SYSTEM = "urn:ietf:rfc:3986"
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"

# nearcare's own identifier and tag systems (URNs: stable names, no host implied).
PATIENT_REF_SYSTEM = "urn:nearcare:patient-ref"
AGENT_SYSTEM = "urn:nearcare:agent-id"
BACKEND_FLAG_SYSTEM = "urn:nearcare:backend-flag"
HOLD_REASON_SYSTEM = "urn:nearcare:hold-reason"

PHD_NUMERIC = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdNumericObservation"
PHD_COMPOUND = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCompoundNumericObservation"
PHD_BITS = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBitsEnumerationObservation"
PHD_COINCIDENT = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCoincidentTimeStampObservation"
PHD_DEVICE = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdDevice"
PHG_DEVICE = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhgDevice"
PHD_PATIENT = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdPatient"

# R4 vital-signs profiles: only the vital signs (glucose is not one, so it gets neither the
# profile nor the category).
VITAL_PROFILES = {
    MeasurementKind.SPO2: "http://hl7.org/fhir/StructureDefinition/oxygensat",
    MeasurementKind.PULSE: "http://hl7.org/fhir/StructureDefinition/heartrate",
    MeasurementKind.WEIGHT: "http://hl7.org/fhir/StructureDefinition/bodyweight",
    MeasurementKind.BLOOD_PRESSURE: "http://hl7.org/fhir/StructureDefinition/bp",
    MeasurementKind.TEMPERATURE: "http://hl7.org/fhir/StructureDefinition/bodytemp",
    MeasurementKind.RESPIRATION_RATE: "http://hl7.org/fhir/StructureDefinition/resprate",
}

# Pulse: MDC_PULS_RATE_NON_INV from a cuff, MDC_PULS_OXIM_PULS_RATE from an oximeter.
PULSE_FROM_CUFF = 149546
PULSE_FROM_OXIMETER = 149530
CUFF_CHARACTERISTICS = frozenset({"2A35", "2A36"})

# MDC device specializations (DeviceTypes11073MDC) per kind the device measures.
SPECIALIZATION = {
    MeasurementKind.BLOOD_PRESSURE: (528391, "MDC_DEV_SPEC_PROFILE_BPM"),
    MeasurementKind.SPO2: (528388, "MDC_DEV_SPEC_PROFILE_PULS_OXIM"),
    MeasurementKind.WEIGHT: (528399, "MDC_DEV_SPEC_PROFILE_SCALE"),
    MeasurementKind.TEMPERATURE: (528392, "MDC_DEV_SPEC_PROFILE_TEMP"),
    MeasurementKind.GLUCOSE: (528401, "MDC_DEV_SPEC_PROFILE_GLUCOSE"),
}
GENERIC_SPECIALIZATION = (528384, "MDC_DEV_SPEC_PROFILE_HYDRA")
PHD_TYPE = (65573, "MDC_MOC_VMS_MDS_SIMP")
PHG_TYPE = (531981, "MDC_MOC_VMS_MDS_AHD")
VERSION_FW = (531976, "MDC_ID_PROD_SPEC_FW")
VERSION_SW = (531975, "MDC_ID_PROD_SPEC_SW")
TIME_SYNC_PROTOCOL = (68220, "MDC_TIME_SYNC_PROTOCOL")
TIME_SYNC_NONE = (532224, "MDC_TIME_SYNC_NONE")
TIME_SYNC_NTP = (532225, "MDC_TIME_SYNC_NTPV3")
CLOCK_ABSOLUTE = (67975, "MDC_ATTR_TIME_ABS")

# PhdBaseObservation's measurement-status mapping, from the device's own flags (snake_case
# names of the GATT status bits, see edge_agent/gatt).
INVALID_FLAGS = frozenset({"invalid_measurement"})
UNAVAILABLE_FLAGS = frozenset({"measurement_unavailable", "value_missing"})
PRELIMINARY_FLAGS = frozenset({"measurement_ongoing", "early_estimated_data"})
TEST_FLAGS = frozenset({"data_for_testing", "data_for_demonstration"})
INTERPRETATION_FLAGS = {  # the pocd measurement-status code (one per Observation)
    "questionable_measurement": "questionable",
    "calibration_ongoing": "calibration-ongoing",
    "validated_data": "validated",
}

# Device quality bits as a PhdBitsEnumerationObservation: (MDC status attribute, ASN1ToHL7 code).
_OXIM_STATUS = (150604, "MDC_PULS_OXIM_DEV_STATUS")
_BPM_STATUS = (8410608, "MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS")
_GLU_STATUS = (8418060, "MDC_GLU_METER_DEV_STATUS")
STATUS_BITS: dict[str, tuple[tuple[int, str], str, str]] = {
    "body_movement": (_BPM_STATUS, "8410608.0", "body-movement"),
    "cuff_loose": (_BPM_STATUS, "8410608.1", "cuff-too-loose"),
    "irregular_pulse": (_BPM_STATUS, "8410608.2", "irregular-pulse"),
    "pulse_rate_above_upper_limit": (_BPM_STATUS, "8410608.3", "pulse-over-range-limit"),
    "pulse_rate_below_lower_limit": (_BPM_STATUS, "8410608.4", "pulse-under-range-limit"),
    "improper_position": (_BPM_STATUS, "8410608.5", "improper-body-position"),
    "sensor_disconnected": (_OXIM_STATUS, "150604.0", "sensor-disconnected"),
    "probe_unplugged": (_OXIM_STATUS, "150604.0", "sensor-disconnected"),
    "sensor_malfunctioning": (_OXIM_STATUS, "150604.1", "sensor-malfunction"),
    "sensor_displaced": (_OXIM_STATUS, "150604.2", "sensor-displaced"),
    "unknown_sensor_connected": (_OXIM_STATUS, "150604.3", "sensor-unsupported"),
    "sensor_unconnected_to_user": (_OXIM_STATUS, "150604.4", "sensor-off"),
    "no_finger": (_OXIM_STATUS, "150604.4", "sensor-off"),
    "sensor_interference": (_OXIM_STATUS, "150604.5", "sensor-interference"),
    "signal_analysis_ongoing": (_OXIM_STATUS, "150604.6", "signal-searching"),
    "searching": (_OXIM_STATUS, "150604.6", "signal-searching"),
    "questionable_pulse": (_OXIM_STATUS, "150604.7", "signal-pulse-questionable"),
    "nonpulsatile_signal": (_OXIM_STATUS, "150604.8", "signal-non-pulsatile"),
    "erratic_signal": (_OXIM_STATUS, "150604.9", "signal-erratic"),
    "low_perfusion": (_OXIM_STATUS, "150604.10", "signal-low-perfusion"),
    "poor_signal": (_OXIM_STATUS, "150604.11", "signal-poor"),
    "weak_signal": (_OXIM_STATUS, "150604.11", "signal-poor"),
    "inadequate_signal": (_OXIM_STATUS, "150604.12", "signal-inadequate"),
    "no_signal": (_OXIM_STATUS, "150604.12", "signal-inadequate"),
    "signal_processing_irregularity": (_OXIM_STATUS, "150604.13", "signal-processing-irregularity"),
    "equipment_malfunction": (_OXIM_STATUS, "150604.14", "device-equipment-malfunction"),
    "extended_display_update_ongoing": (_OXIM_STATUS, "150604.15", "device-extended-update"),
    "strip_type_incorrect": (_GLU_STATUS, "8418060.2", "sensor-type-incorrect"),
    "sensor_malfunction": (_GLU_STATUS, "8418060.3", "sensor-malfunction"),
    "sensor_temperature_too_high": (_GLU_STATUS, "8418060.10", "sensor-temp-too-high"),
    "sensor_temperature_too_low": (_GLU_STATUS, "8418060.11", "sensor-temp-too-low"),
    "result_too_low": (_GLU_STATUS, "8418060.18", "sensor-result-too-low"),
    "result_too_high": (_GLU_STATUS, "8418060.19", "sensor-result-too-high"),
}

# Clock flags: the agent's (quality) and the backend's (flags) that mean the device clock was
# not used as the time of measurement.
CLOCK_FLAGS = frozenset({"device_clock_not_set", "device_clock_implausible", "clock_not_set"})

# FUT (ehealth-observation): the codes of ValueSet-ehealth-observation-codes (IG 8.0.0).
NPU_SYSTEM = "urn:oid:1.2.208.176.2.1"
SKS_SYSTEM = "urn:oid:1.2.208.176.2.4"
FUT_OBSERVATION = "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-observation"
FUT_EPISODE_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare"
FUT_QUALITY_EXT = "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-quality"
FUT_TIMING_EXT = "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-resolved-timing"
FUT_QUALITY_TYPES = "http://ehealth.sundhed.dk/cs/quality-types"
FUT_SITUATION_QUALITY = "http://ehealth.sundhed.dk/cs/situation-quality"
FUT_TIMING_TYPES = "http://ehealth.sundhed.dk/cs/resolved-timing-type"
FUT_MEASUREMENT_ID_SYSTEM = "urn:nearcare:measurement-id"

# (system, code, display) per component; the BP panel is the SKS home-BP code with the DNK
# components (the MCS88019/88020 codes left the value set in IG 4.0.0).
FUT_CODES: dict[str, tuple[str, str, str]] = {
    "spo2": (NPU_SYSTEM, "NPU03011", "Hb(Fe; O2-bind.; aB)—Oxygen(O2); mætn. = ?"),
    "pulse": (NPU_SYSTEM, "NPU21692", "Hjerte—Systole; frekv. = ? × 1/min"),
    "weight": (NPU_SYSTEM, "NPU03804", "Pt—Legeme; masse = ? kg"),
    "temperature": (NPU_SYSTEM, "NPU08676", "Pt—Legeme; temp. = ? °C"),
    "systolic": (NPU_SYSTEM, "DNK05472", "Blodtryk systolisk;Arm"),
    "diastolic": (NPU_SYSTEM, "DNK05473", "Blodtryk diastolisk;Arm"),
}
FUT_BP_PANEL = (SKS_SYSTEM, "ZZ3170", "Hjemmeblodtryksmåling udført af patienten")
