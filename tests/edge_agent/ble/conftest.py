"""BlueZoo (a user-space BlueZ on a private dbus-daemon) and emulated GATT peripherals.

Adapter hci0 is the agent's. Each emulated device is a GATT application plus an LE
advertisement registered on its own BlueZoo adapter (hci1…) through GattManager1 and
LEAdvertisingManager1, so each has its own address, as real devices do.

BlueZoo quirks handled here: an advertisement must say Discoverable; a peripheral cannot hang
up from its own side (the link is not propagated), so a device "disconnects itself" by calling
Disconnect on the central's view of it; pairing needs a registered NoInputNoOutput agent.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusBytes, DBusDict, DBusObjectPath, DBusSignature, DBusStr
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

SIG = "-0000-1000-8000-00805f9b34fb"
StrList = Annotated[list[str], DBusSignature("as")]


def full(short: str) -> str:
    return f"0000{short.lower()}{SIG}" if len(short) == 4 else short


class Advertisement(ServiceInterface):
    def __init__(self, service_uuids: list[str], local_name: str) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._uuids = service_uuids
        self._local_name = local_name  # never `self.name`: ServiceInterface keeps the interface name there

    @method()
    def Release(self) -> None:
        return None

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> StrList:
        return self._uuids

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> DBusStr:
        return self._local_name

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:
        return True


class GattService(ServiceInterface):
    def __init__(self, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self._uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> DBusBool:
        return True


class GattCharacteristic(ServiceInterface):
    def __init__(self, device: "EmulatedDevice", uuid: str, service_path: str, flags: list[str],
                 value: bytes = b"") -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.device = device
        self.short = uuid
        self._uuid = full(uuid)
        self._service = service_path
        self._flags = flags
        self._value = value
        self.notifying = False

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> DBusObjectPath:
        return self._service

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> StrList:
        return self._flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> DBusBytes:
        return self._value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> DBusBool:
        return self.notifying

    @method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:
        self.device.log.append(("read", self.short))
        return self._value

    @method()
    def WriteValue(self, value: DBusBytes, options: DBusDict) -> None:
        self.device.log.append(("write", self.short))
        self.device.writes[self.short] = bytes(value)
        self.device.on_write(self.short, bytes(value))

    @method()
    def StartNotify(self) -> None:
        self.device.log.append(("notify", self.short))
        self.notifying = True
        self.device.on_subscribe(self.short)

    @method()
    def StopNotify(self) -> None:
        self.notifying = False

    @method()
    def Confirm(self) -> None:
        self.device.confirmations += 1

    def send(self, data: bytes) -> None:
        self._value = data
        self.emit_properties_changed({"Value": data})


@dataclass
class EmulatedDevice:
    """One peripheral: ``services`` maps a service UUID to {characteristic: (flags, initial value)}."""

    adapter: int
    address: str
    name: str
    services: dict[str, dict[str, tuple[list[str], bytes]]]
    behaviour: Callable[["EmulatedDevice", str, str, bytes], None] = lambda d, event, uuid, data: None
    log: list[tuple[str, str]] = field(default_factory=list)
    writes: dict[str, bytes] = field(default_factory=dict)
    confirmations: int = 0
    chars: dict[str, GattCharacteristic] = field(default_factory=dict)
    bus: MessageBus | None = None
    pending: set[asyncio.Future[object]] = field(default_factory=set)

    def on_write(self, uuid: str, data: bytes) -> None:
        self.behaviour(self, "write", uuid, data)

    def on_subscribe(self, uuid: str) -> None:
        self.behaviour(self, "subscribe", uuid, b"")

    def later(self, delay: float, fn: Callable[[], object]) -> None:
        asyncio.get_running_loop().call_later(delay, fn)

    def disconnect_itself(self) -> None:
        """Hang up as the real device would (via the central's view: BlueZoo does not propagate it)."""
        assert self.bus is not None
        path = f"/org/bluez/hci0/dev_{self.address.replace(':', '_')}"
        self.pending.add(asyncio.ensure_future(self.bus.call(Message(
            destination="org.bluez", path=path, interface="org.bluez.Device1", member="Disconnect"))))

    async def register(self, bus: MessageBus) -> None:
        self.bus = bus
        app = f"/org/nearcare/emulated{self.adapter}"
        for i, (service_uuid, chars) in enumerate(self.services.items()):
            spath = f"{app}/service{i}"
            bus.export(spath, GattService(full(service_uuid)))
            for j, (uuid, (flags, value)) in enumerate(chars.items()):
                ch = GattCharacteristic(self, uuid, spath, flags, value)
                bus.export(f"{spath}/char{j}", ch)
                self.chars[uuid] = ch
        adv_path = f"{app}/advertisement"
        bus.export(adv_path, Advertisement([full(u) for u in self.services], self.name))
        adapter = f"/org/bluez/hci{self.adapter}"
        for iface, member, arg in (("org.bluez.GattManager1", "RegisterApplication", app),
                                   ("org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", adv_path)):
            reply = await bus.call(Message(destination="org.bluez", path=adapter, interface=iface, member=member,
                                           signature="oa{sv}", body=[arg, {}]))
            assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply and reply.body


async def device_property(address: str, name: str) -> object:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(Message(destination="org.bluez", path=f"/org/bluez/hci0/dev_{address.replace(':', '_')}",
                                       interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
                                       body=["org.bluez.Device1", name]))
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply and reply.body
        return reply.body[0].value
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()


@dataclass
class BlueZoo:
    bus_address: str
    central: str
    peripherals: list[str]


def _wait_for_bluez(env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
    probe = ("import asyncio\nfrom dbus_fast import BusType, Message\nfrom dbus_fast.aio import MessageBus\n"
             "async def m():\n b = await MessageBus(bus_type=BusType.SYSTEM).connect()\n"
             " r = await b.call(Message(destination='org.bluez', path='/org/bluez/hci0',"
             " interface='org.freedesktop.DBus.Properties', member='Get', signature='ss',"
             " body=['org.bluez.Adapter1', 'Powered']))\n print(r.body[0].value if r.body else r)\n"
             "asyncio.run(m())\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bluezoo exited: {log.read_text()[-2000:]}")
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=10)
        if out.stdout.strip() == "True":
            return
        time.sleep(0.2)
    raise RuntimeError(f"bluezoo did not come up: {log.read_text()[-2000:]}")


@pytest.fixture
def bluezoo(monkeypatch: pytest.MonkeyPatch) -> Iterator["BlueZoo"]:
    """A private dbus-daemon (standing in for the system bus) with BlueZoo on it: hci0 for the
    agent, hci1-hci3 for emulated peripherals. DBUS_SYSTEM_BUS_ADDRESS points bleak at it."""
    dbus_daemon = shutil.which("dbus-daemon")
    if dbus_daemon is None:
        pytest.fail("dbus-daemon not found (Debian: apt-get install dbus; `make system-deps`)", pytrace=False)
    zoo_bin = Path(sys.executable).with_name("bluezoo")
    if not zoo_bin.exists():
        pytest.fail("bluezoo not installed in the venv (pip install bluezoo; it is in the dev extra)", pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="nearcare-bluezoo-"))
    address = f"unix:path={workdir / 'system_bus_socket'}"
    daemon = subprocess.Popen([dbus_daemon, "--session", f"--address={address}", "--nofork"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    central = "00:AA:00:00:00:01"
    peripherals = ["00:09:1F:00:00:11", "C0:4E:30:00:00:12", "00:1C:05:00:00:13"]
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    zoo_log = workdir / "bluezoo.log"
    with zoo_log.open("wb") as log_file:
        zoo = subprocess.Popen([str(zoo_bin), "--auto-enable", "--scan-interval", "1", "-a", central,
                                *[a for p in peripherals for a in ("-a", p)]],
                               env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not (workdir / "system_bus_socket").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _wait_for_bluez(env, zoo, zoo_log)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield BlueZoo(address, central, peripherals)
    finally:
        for proc in (zoo, daemon):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Emulation:
    """What the tests build peripherals from (test modules cannot import this conftest)."""

    device: type[EmulatedDevice]
    device_property: Callable[[str, str], "asyncio.Future[object]"]


@pytest.fixture
def emulation() -> Emulation:
    return Emulation(EmulatedDevice, device_property)  # type: ignore[arg-type]
