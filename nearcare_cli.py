"""The ``nearcare`` command: ``agent``, ``backend``, ``rules`` and ``demo``.

Each group lives with its package and imports its heavy parts inside the commands, so a
Raspberry Pi with only ``nearcare[agent]`` runs ``nearcare agent …`` without FastAPI or psycopg.
"""

from __future__ import annotations

import logging
import os

import typer

from alert_rules.cli import app as rules_app
from backend.cli import app as backend_app
from edge_agent.cli import app as agent_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="nearcare: telemedicine home monitoring (edge agent, backend, alert rules).",
)
app.add_typer(agent_app, name="agent", help="The edge agent on the home tablet or Raspberry Pi.")
app.add_typer(backend_app, name="backend", help="The backend: migrations, API, ingest, scheduler.")
app.add_typer(rules_app, name="rules", help="Alert rules and routing: check, test, route.")


@app.command()
def demo(
    citizens: int = typer.Option(12, help="How many simulated citizens to run."),
    port: int = typer.Option(8000, help="HTTP port of the clinician web app."),
    speed: float = typer.Option(
        3600.0, help="Simulated seconds per real second while the last 3 days replay; then real time."
    ),
) -> None:
    """Run the whole platform on embedded defaults with simulated devices and citizens."""
    from backend.demo import run_demo

    run_demo(citizens=citizens, port=port, speed=speed)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("NEARCARE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler logs every job run at INFO; our jobs log what matters themselves.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
