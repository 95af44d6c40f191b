"""bench/cold_start.py's own arithmetic: the phases' medians and the verdict it prints."""

from __future__ import annotations

import json

from bench import cold_start


def test_the_median_of_each_phase_skips_starts_that_did_not_report_it():
    phases = [{"total": 3.0, "app_imports": 1.0}, {"total": 5.0}, {}]
    medians = cold_start.median_phases(phases)
    assert medians["total"] == 4.0
    assert medians["app_imports"] == 1.0
    assert medians["model_load"] is None


def runs(start: float) -> dict:
    return {
        "floor": [0.5, 0.7],
        "baked": [start, start + 2],
        "unbaked": [2 * start, 2 * start + 4],
        "phases": [{"total": start}],
        "unbaked_phases": [{"total": 2 * start}],
    }


def test_the_report_says_met_or_missed_against_6_s_and_the_ratios(capsys):
    cold_start.report(runs(4.0), "today", (1.0, 1.0), [])
    out = capsys.readouterr().out
    assert "MET     docker run to ready <= 6 s  (5.0 s)" in out
    assert "start without baked bytecode / start  (2.00x)" in out
    figures = json.loads(out.rsplit("BENCH ", 1)[1])
    assert figures["start"] == 5.0 and figures["floor"] == 0.6
    cold_start.report(runs(9.0), "today", (1.0, 1.0), [])
    assert "MISSED  docker run to ready <= 6 s  (10.0 s)" in capsys.readouterr().out
