"""``nearcare rules …``"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def _rules() -> None:
    """Alert rules and routing."""
