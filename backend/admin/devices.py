"""The devices an operator may register on a gateway, and the checks on what is typed (pure).

Issue 13: "Registrér apparat" accepted ``not-a-mac`` and any model. A device is registered with
its Bluetooth address written ``AA:BB:CC:DD:EE:FF`` (lower case and dashes are accepted and
normalised) and one of the models the edge agent has a recipe for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.admin.errors import N_, AdminError


@dataclass(frozen=True, slots=True)
class KnownModel:
    model: str
    """The model as stored and shown ("A&D UA-651BLE")."""
    manufacturer: str
    measures: str
    """What it measures, in Danish (shown in the model list)."""
    aliases: tuple[str, ...] = ()


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("A&D UA-651BLE", "A&D Medical", "blodtryk og puls", ("UA-651BLE", "UA-651", "A&D UA-651")),
    KnownModel("A&D UC-352BLE", "A&D Medical", "vægt", ("UC-352BLE", "UC-352", "A&D UC-352")),
    KnownModel("Nonin 3230", "Nonin Medical", "iltmætning og puls", ("3230", "Nonin WristOx2 3230")),
    KnownModel("Nonin WristOx2 3150", "Nonin Medical", "iltmætning og puls", ("3150", "WristOx2 3150")),
)
"""The models the edge agent reads (edge_agent/devices/recipes.py: the A&D session and the Nonin
continuous oximetry recipes). Add a model here when the agent has been tested with it."""

_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


class DeviceInputError(AdminError):
    """What was typed for a device is not a Bluetooth address or a known model."""


def mac_address(text: str) -> str:
    """``AA:BB:CC:DD:EE:FF`` from what was typed (case and dashes normalised), else DeviceInputError."""
    value = text.strip().upper().replace("-", ":")
    if not _MAC.match(value):
        raise DeviceInputError(
            f"{text!r} is not a Bluetooth address of the form AA:BB:CC:DD:EE:FF", key=N_("device_bad_mac"), address=text
        )
    return value


def known_model(text: str) -> KnownModel:
    """The known model ``text`` names (its name or an alias, any case), else DeviceInputError."""
    wanted = " ".join(text.split()).casefold()
    for m in KNOWN_MODELS:
        if wanted in (m.model.casefold(), *(a.casefold() for a in m.aliases)):
            return m
    names = ", ".join(m.model for m in KNOWN_MODELS)
    raise DeviceInputError(f"unknown device model {text!r}; known models: {names}",
                           key=N_("device_unknown_model"), model=text, models=names)
