"""FHIR R4 export of a patient's home measurements (see :mod:`backend.fhir.export`)."""

from backend.fhir.export import FhirExportError, observation_for, patient_bundle

__all__ = ["FhirExportError", "observation_for", "patient_bundle"]
