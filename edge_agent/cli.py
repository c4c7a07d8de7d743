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
