"""``segment``'s report in one pass: the summary is built once as plain data (`FieldReport`), then written as
JSON, Markdown and HTML by renderers that only read it."""

from __future__ import annotations

import copy
import html
import json

import torch

from fusionseg.sem.export.html import render_html, render_markdown
from fusionseg.sem.export.summary import FieldReport

QC = {"agreement": {"share": 1.0, "agreeing": 3, "points": 3}, "unclassified_share": 0.0, "void_share": 0.25,
      "warnings": ["all 3 measured points lie at one pixel"]}  # fmt: skip


def _report() -> FieldReport:
    files = {"overlay": "f_overlay.png", "uncertainty_png": "f_uncertainty.png", "summary": "summary.json"}
    summary = {"field": "f<1>", "files": files, "modal": []}
    tables = [("Modal mineralogy", ["phase", "pixels", "area %"], [["quartz", 12, 60.0], ["albite", 8, None]])]
    return FieldReport(summary, ["input: x.bcf", "mode: auto", "note: a & b"], ["agrees: 100 %", "WARNING: w"], tables)


def test_renderers_only_read_the_report() -> None:
    report = _report()
    before = copy.deepcopy(report)
    md, page = render_markdown(report), render_html(report)
    assert report == before and render_markdown(report) == md and render_html(report) == page
    for line in report.facts + report.qc:
        assert f"- {line}" in md and html.escape(line) in page
    assert "<li class='warn'>WARNING: w</li>" in page and "## Quality control" in md
    assert "## Modal mineralogy" in md and "| albite | 8 | — |" in md and "<td>albite</td><td>8</td><td>—</td>" in page
    assert "![overlay](f_overlay.png)" in md and "<a href='summary.json'>" in page
    quiet = FieldReport(report.summary, report.facts, [], report.tables)  # no QC: no section in Markdown
    assert "Quality control" not in render_markdown(quiet)


def test_segment_outputs_build_the_summary_once_and_render_it(tmp_path, monkeypatch) -> None:
    """One `build_report` (one QC text, one set of facts and tables) per field; summary.json, report.md and
    report.html are that report as written."""
    import fusionseg.sem.export.report as report_mod
    import fusionseg.sem.export.summary as summary_mod
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.meta import hide_target
    from fusionseg.sem.segment import SegmentResult

    sample = hide_target(DATA_SOURCES.create("sem-synthetic", num_fields=1, size=48, rocks=["granite"],
                                             eds_fraction=0.03, seed=1)[0], "tiny")  # fmt: skip
    labels = torch.as_tensor(sample.meta.domain.original_target).clamp_min(0)
    result = SegmentResult(labels, torch.full(labels.shape, 0.9), tuple(sample.meta.class_names), sample, "test",
                           timings={"map": 1.0}, qc=QC)  # fmt: skip
    built, calls = [], {"qc_lines": 0, "report_facts": 0, "mineralogy_tables": 0}
    for name in calls:
        real = getattr(summary_mod, name)
        monkeypatch.setattr(
            summary_mod, name, lambda *a, _n=name, _f=real: calls.__setitem__(_n, calls[_n] + 1) or _f(*a)
        )
    real_build = report_mod.build_report
    monkeypatch.setattr(report_mod, "build_report", lambda *a: built.append(real_build(*a)) or built[-1])
    files = report_mod.write_segment_outputs(tmp_path, result, input_path="tiny.bcf")
    assert len(built) == 1 and calls == {"qc_lines": 1, "report_facts": 1, "mineralogy_tables": 1}
    report = built[0]
    assert (tmp_path / files["report"]).read_text() == render_markdown(report)
    assert (tmp_path / files["report_html"]).read_text() == render_html(report)
    summary = json.loads((tmp_path / files["summary"]).read_text())
    assert sorted(summary) == sorted(report.summary) and summary["files"] == files == report.files
    assert summary["qc"] == QC and "ari_vs_target" in summary and summary["modal"] == summary["mineralogy"]["modal"]
    assert "WARNING: all 3 measured points lie at one pixel" in report.qc


def test_the_report_puts_warnings_and_findings_first_and_run_details_last() -> None:
    from fusionseg.sem.export.summary import findings, report_facts

    summary = {"input": "x.bcf", "mode": "shipped weights", "points": 9, "point_percent": 1.0, "timings": {"a_s": 1},
               "mean_uncertainty": 0.1, "energy_axis": {"size": 2048, "scale_ev": 9.999, "offset_ev": -470.0},
               "beam_energy_kev": 20.0, "versions": {"fusionseg": "0.1.0"}, "labelling": 'library: {"quartz": 9}',
               "mineralogy": {"pixel_size_um": 1.5, "modal": [
                   {"phase": "quartz", "area_percent": 100.0, "mass_percent": 100.0},
                   {"phase": "unclassified", "area_percent": 0.0, "mass_percent": None},
                   {"phase": "not sample", "area_percent": None, "mass_percent": None}],
                   "not_sample": {"pixels": {"pore": 12}, "field_percent": 1.2}}}  # fmt: skip
    facts = report_facts(summary)
    assert "EDS calibration: 2048 channels of 9.999 eV, -0.47 to 20 keV; beam 20.0 kV" in facts
    assert "point labelling: library: quartz 9" in facts and not any("EnergyAxis(" in f for f in facts)
    found = findings(summary)
    assert found[0] == "1 phase(s) by area of the sample: quartz 100.0 % (100.0 % by mass)" and "1.20 %" in found[1]
    report = FieldReport({**_report().summary}, facts, ["agrees: 100 %", "WARNING: only 9 spectra"],
                         _report().tables, found)  # fmt: skip
    md, page = render_markdown(report), render_html(report)
    order = [md.index(s) for s in ("WARNING: only 9 spectra", "## What was found", "## Modal mineralogy",
                                   "## Quality control", "## Run details", "EDS calibration")]  # fmt: skip
    assert order == sorted(order) and md.count("WARNING: only 9 spectra") == 1
    order = [page.index(s) for s in ("class='box'", "What was found", "Modal mineralogy", "Run details")]
    assert order == sorted(order)
