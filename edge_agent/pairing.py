"""A BlueZ pairing agent (org.bluez.Agent1, NoInputNoOutput) exported with dbus-fast.

bleak registers no agent, and BlueZ will not pair without one. Home devices have neither a
keypad nor a display, so "just works" pairing applies; the agent still only agrees for devices
in this home's registry and rejects everything else.
"""

import logging
from collections.abc import Callable

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusObjectPath, DBusStr, DBusUInt16, DBusUInt32
from dbus_fast.service import ServiceInterface, method

log = logging.getLogger(__name__)

AGENT_PATH = "/org/nearcare/agent"
CAPABILITY = "NoInputNoOutput"
_REJECTED = "org.bluez.Error.Rejected"


def address_from_path(device_path: str) -> str:
    """``/org/bluez/hci0/dev_00_09_1F_8A_12_34`` -> ``00:09:1F:8A:12:34``."""
    return device_path.rsplit("/", 1)[-1].removeprefix("dev_").replace("_", ":").upper()


class PairingAgent(ServiceInterface):
    def __init__(self, is_known: Callable[[str], bool]) -> None:
        super().__init__("org.bluez.Agent1")
        self._is_known = is_known
        self.accepted: list[str] = []

    def _check(self, device: str, what: str) -> None:
        address = address_from_path(device)
        if not self._is_known(address):
            log.warning("pairing agent: rejecting %s from unregistered device %s", what, address)
            raise DBusError(_REJECTED, f"{address} is not registered in this home")
        log.info("pairing agent: accepting %s from %s", what, address)
        self.accepted.append(address)

    @method()
    def Release(self) -> None:
        log.info("pairing agent released by BlueZ")

    @method()
    def RequestConfirmation(self, device: DBusObjectPath, passkey: DBusUInt32) -> None:
        self._check(device, "confirmation")

    @method()
    def RequestAuthorization(self, device: DBusObjectPath) -> None:
        self._check(device, "authorization")

    @method()
    def AuthorizeService(self, device: DBusObjectPath, uuid: DBusStr) -> None:
        self._check(device, f"service {uuid}")

    @method()
    def RequestPinCode(self, device: DBusObjectPath) -> DBusStr:
        raise DBusError(_REJECTED, "no input capability")

    @method()
    def RequestPasskey(self, device: DBusObjectPath) -> DBusUInt32:
        raise DBusError(_REJECTED, "no input capability")

    @method()
    def DisplayPasskey(self, device: DBusObjectPath, passkey: DBusUInt32, entered: DBusUInt16) -> None:
        return None

    @method()
    def DisplayPinCode(self, device: DBusObjectPath, pincode: DBusStr) -> None:
        return None

    @method()
    def Cancel(self) -> None:
        log.info("pairing agent: BlueZ cancelled a pairing request")


async def register_agent(is_known: Callable[[str], bool]) -> tuple[MessageBus, PairingAgent]:
    """Export the agent on the system bus and make it BlueZ's default agent."""
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    agent = PairingAgent(is_known)
    bus.export(AGENT_PATH, agent)
    intro = await bus.introspect("org.bluez", "/org/bluez")
    manager = bus.get_proxy_object("org.bluez", "/org/bluez", intro).get_interface("org.bluez.AgentManager1")
    await manager.call_register_agent(AGENT_PATH, CAPABILITY)  # type: ignore[attr-defined]
    await manager.call_request_default_agent(AGENT_PATH)  # type: ignore[attr-defined]
    log.info("pairing agent registered (%s)", CAPABILITY)
    return bus, agent
