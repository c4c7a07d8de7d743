"""The fault matrix's fast subset: agents publish continuously through the real agent code while
each fault is injected in turn; every reading generated around it must be stored, held or
dead-lettered exactly once (:mod:`tests.faults.harness`; ``make proof`` runs the long variants).

One platform for the module (private PostgreSQL, private Mosquitto with the deploy settings, two
ingest workers, the agents); each test injects one fault and accounts for the ids generated
since the previous one. They run in file order: the worker lost for good comes last.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.faults.harness import FAST, FAULTS, HEADER, FaultMatrix, format_row


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def matrix() -> Iterator[FaultMatrix]:
    m = FaultMatrix(FAST, log=_say)
    with m:
        _say(HEADER)
        yield m
    if all(r.ok for r in m.rows) and len(m.rows) == len(FAULTS):
        m.remove_workdir()
    else:
        _say(f"fault matrix: logs and spools kept in {m.workdir}")


@pytest.mark.parametrize("fault", FAULTS)
def test_no_reading_is_lost_or_duplicated(matrix: FaultMatrix, fault: str) -> None:
    row = dict(matrix.faults())[fault]()
    assert row.generated > 0, f"no reading was generated around {fault}: the load generator stopped"
    assert row.lost == 0 and row.duplicated == 0, (
        f"{HEADER}\n{format_row(row)}\nlost ids (first 5): {list(row.lost_ids[:5])}; logs in {matrix.workdir}"
    )
