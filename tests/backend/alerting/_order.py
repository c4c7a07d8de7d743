"""Comparing a citizen's alerts with an evaluation of the same readings in measurement order
(the DB test of late readings and the fault test share it).

What must be equal, and why the rest may differ (``backend/alerting/README.md``, "Evaluation in
measurement order", limits):

- A rule that looks only at the reading itself (absolute limits): the alert rows, each with
  its state, severity, last value, breach and in-range counts and last reading, exactly.
- A rule that looks at history (trend, baseline, score): every in-order alert row exactly;
  besides them only resolved alerts whose newest breach lies within one of the in-order runs
  of the rule. Such a reading was decided, when it came, against a history that still lacked
  older readings; the alert it raised was stored, and stays (never deleted), while its run has
  since joined a longer one whose evidence another alert row carries.
- Transitions are a log of what the system did when it did it, and are never rewritten: an
  alert opened on a newer reading before older ones came keeps that "opened" row (its value and
  severity); an alert resolved before its worst reading came is raised on its row with no
  "worsened" row. So each alert's transitions are checked for what always holds: opened first,
  a resolution last when it is resolved, severities that never fall, no severity beyond the
  row's, and nothing after a resolution but an opening again of the same alert.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from alert_rules.model import SEVERITY_RANK

HISTORY_KINDS = frozenset({"trend", "baseline", "score", "personal"})
"""Rule kinds whose finding for a reading depends on earlier readings."""

Row = tuple[Any, ...]
"""(rule, kind, last reading's place in the series, state, severity, last value, breach count,
in-range count, transitions as (action, severity, value, from state, to state))."""


def alert_rows(db: Any, pid: int, index: Mapping[uuid.UUID, int]) -> list[Row]:
    """The citizen's alerts in measurement order per rule, readings named by their place."""
    out = []
    for aid, rule, kind, state, sev, value, breaches, in_range, last in db.execute(
            "SELECT id, rule_id, rule_kind, state, severity, last_value, breach_count, in_range_count,"
            " last_reading_id FROM alerts WHERE patient_id = %s", (pid,)).fetchall():
        transitions = tuple(db.execute(
            "SELECT action, severity, value, from_state, to_state FROM alert_transitions WHERE alert_id = %s"
            " ORDER BY id", (aid,)).fetchall())
        out.append((rule, kind, index.get(last), state, sev, value, breaches, in_range, transitions))
    return sorted(out, key=lambda r: (r[0], -1 if r[2] is None else r[2]))


def breaches(db: Any, pid: int, index: Mapping[uuid.UUID, int]) -> dict[str, set[int]]:
    """Per rule, the places of the readings that breached it, as their evaluation rows say."""
    out: dict[str, set[int]] = {}
    for mid, rules in db.execute(
            "SELECT measurement_id, ARRAY(SELECT jsonb_object_keys(fired)) FROM reading_evaluations"
            " WHERE patient_id = %s", (pid,)).fetchall():
        for rule in rules:
            out.setdefault(rule, set()).add(index[mid])
    return out


def assert_as_in_order(faulted: Sequence[Row], in_order: Sequence[Row], fired: Mapping[str, set[int]]) -> None:
    """``faulted`` (readings in any order) against ``in_order`` (one at a time in measurement
    order; ``fired``: its breaches per rule, :func:`breaches`), as the module says."""
    assert in_order, "the series must raise alerts"
    rules = sorted({r[0] for r in (*faulted, *in_order)})
    for rule in rules:
        mine = [r[2:8] for r in faulted if r[0] == rule]
        theirs = [r[2:8] for r in in_order if r[0] == rule]
        kind = next(r[1] for r in (*faulted, *in_order) if r[0] == rule)
        if kind not in HISTORY_KINDS:
            assert mine == theirs, (rule, mine, theirs)
            continue
        missing = [r for r in theirs if r not in mine]
        assert not missing, (rule, "in-order alerts not stored", missing, mine)
        for extra in [r for r in mine if r not in theirs]:
            assert extra[1] == "resolved", (rule, "an extra alert left unresolved", extra, theirs)
            # its newest breach is a breach in measurement order too: within an in-order run
            assert extra[0] in fired.get(rule, set()), (rule, extra, theirs)
    for r in faulted:
        rule, state, severity, transitions = r[0], r[3], r[4], r[8]
        actions = [t[0] for t in transitions]
        assert actions and actions[0] == "opened" and transitions[0][3] is None, (rule, transitions)
        assert set(actions) <= {"opened", "worsened", "resolved"}, (rule, transitions)
        assert (actions[-1] == "resolved") == (state == "resolved"), (rule, state, transitions)
        ranks = [SEVERITY_RANK[t[1]] for t in transitions]
        assert ranks == sorted(ranks, reverse=True) and min(ranks) >= SEVERITY_RANK[severity], (rule, r)
        for before, after in itertools.pairwise(actions):
            assert before != "resolved" or after == "opened", (rule, transitions)  # only an opening again


def copd_spo2_dip(rng: random.Random, n: int = 120) -> list[float]:
    """SpO2 of a COPD citizen, one reading every 15 minutes: stable, a dip through yellow into
    red, recovery, a second yellow dip (about 1 % of noise, so the limits are crossed back and
    forth at the edges)."""
    out = []
    for i in range(n):
        base = 95.0
        if 30 <= i < 50:
            base = 95.0 - (i - 30) * 0.6  # down to about 83
        elif 50 <= i < 65:
            base = 83.0 + (i - 50) * 0.8
        elif 90 <= i < 100:
            base = 88.0
        out.append(round(base + rng.uniform(-0.8, 0.8), 1))
    return out
