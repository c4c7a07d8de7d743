"""The shared vocabulary and wire contract of nearcare.

Pure: pydantic and the standard library only, no I/O. Both the edge agent and the backend
import it; neither imports the other.
"""

from vitals.errors import VitalsError, WireError
from vitals.kinds import KINDS, Component, KindSpec, MeasurementKind, spec
from vitals.wire import (
    SCHEMA_VERSION,
    AgentState,
    AgentStatus,
    Device,
    Envelope,
    Measurement,
    MonitoringPlan,
    PlannedMeasurement,
    RawCharacteristic,
    Receipt,
    ReceiptStatus,
    Topic,
    TopicKind,
    Topics,
    new_measurement_id,
    parse_envelope,
    parse_plan,
    parse_receipt,
    parse_status,
    utcnow,
)

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "AgentState",
    "AgentStatus",
    "Component",
    "Device",
    "Envelope",
    "KindSpec",
    "Measurement",
    "MeasurementKind",
    "MonitoringPlan",
    "PlannedMeasurement",
    "RawCharacteristic",
    "Receipt",
    "ReceiptStatus",
    "Topic",
    "TopicKind",
    "Topics",
    "VitalsError",
    "WireError",
    "new_measurement_id",
    "parse_envelope",
    "parse_plan",
    "parse_receipt",
    "parse_status",
    "spec",
    "utcnow",
]
