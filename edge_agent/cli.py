"""``nearcare agent …``"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def decode(
    uuid: str = typer.Argument(..., help="Characteristic: 4-hex short form (2A35) or full 128-bit UUID."),
    hex: str = typer.Argument(..., help="The characteristic value as hex bytes."),
) -> None:
    """Decode one characteristic value and print it as JSON (a field technician's tool)."""
    from edge_agent.gatt.command import decode as _decode

    _decode(uuid, hex)


@app.command()
def run() -> None:
    """Run the agent with the real devices (configuration: NEARCARE_AGENT_* variables)."""
    from pydantic import ValidationError

    from edge_agent.agent import run_agent
    from edge_agent.errors import AgentError
    from edge_agent.settings import AgentSettings

    try:
        settings = AgentSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        typer.echo(f"invalid agent configuration (NEARCARE_AGENT_*):\n{exc}", err=True)
        raise typer.Exit(2) from None
    try:
        run_agent(settings)
    except AgentError as exc:
        typer.echo(f"agent cannot start: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def simulate(
    citizens: int = typer.Option(12, min=1, help="How many simulated citizens (one agent each)."),
    speed: float = typer.Option(600.0, min=0.001, help="Simulated seconds per real second."),
    mqtt_url: str = typer.Option("mqtt://127.0.0.1:1883", envvar="NEARCARE_AGENT_MQTT_URL", help="Broker URL."),
    topic_root: str = typer.Option("nearcare/v1", envvar="NEARCARE_AGENT_TOPIC_ROOT", help="Topic root."),
    spool_dir: str = typer.Option(".simulate", help="Directory for the simulated agents' spools."),
    history_days: int = typer.Option(14, min=0, help="Days of history to backfill first."),
    lead_hours: float = typer.Option(72.0, min=0.0, help="Hours before now where the fast live replay starts."),
    rate: float = typer.Option(
        0.0, min=0.0, help="Continuous load: spot checks per second per citizen on top of the care plan's "
        "schedule, at the wall clock once the replay has caught up (0: the schedule only)."),
    duration: float = typer.Option(0.0, min=0.0, help="Stop after this many real seconds (0: until Ctrl-C)."),
    seed: int = typer.Option(7, help="Cohort seed."),
    screen_port: int = typer.Option(8080, min=-1, max=65535, envvar="NEARCARE_AGENT_SCREEN_PORT",
                                    help="Home screen port for one simulated citizen (0: any free port, -1: off)."),
    screen_host: str = typer.Option("127.0.0.1", envvar="NEARCARE_AGENT_SCREEN_HOST", help="Home screen address."),
    screen_agent: str = typer.Option("", help="Which simulated agent's home screen to show (default: the first)."),
) -> None:
    """Run N simulated citizens through the real spool and uplink. A restart on the same
    --spool-dir continues where the last run stopped (the same ids for the same readings)."""
    import signal
    import threading
    from pathlib import Path

    from edge_agent.simulate import demo_cohort, run_simulation
    from vitals.wire import Topics

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if duration:
        threading.Timer(duration, stop.set).start()
    try:
        run_simulation(demo_cohort(citizens, seed), broker_url=mqtt_url, topics=Topics(topic_root), speed=speed,
                       stop=stop, history_days=history_days, spool_dir=Path(spool_dir),
                       screen_port=None if screen_port < 0 else screen_port, screen_host=screen_host,
                       screen_agent=screen_agent or None, lead_hours=lead_hours,
                       spot_check_every_s=1.0 / rate if rate else None)
    except KeyboardInterrupt:
        stop.set()
