"""Reporting a sweep: ``results.csv``, ``summary.md`` (one table per EDS fraction, seeds summarised per variant)
and the mIoU-vs-fraction plot, rebuilt from the finished jobs' rows."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.evaluation.sweep_plan import Sweep

METRICS = ("miou", "pixel_acc", "modal_area_error_percent", "train_seconds", "infer_px_per_s")
HIGHER_IS_BETTER = {"miou": True, "pixel_acc": True, "modal_area_error_percent": False, "train_seconds": False,
                    "infer_px_per_s": True}  # fmt: skip
CSV_COLUMNS = (
    "variant", "kind", "config", "overrides", "seed", "fraction", "miou", "pixel_acc", "modal_area_error_percent",
    "miou_mean_over_fields", "train_seconds", "epochs", "infer_px_per_s",
)  # fmt: skip


# ----------------------------------------------------------------------------- results
def write_results(sweep: Sweep, records: Sequence[dict], out: Path) -> tuple[list[dict], dict[str, Path]]:
    """``results.csv`` (one row per variant x fraction x seed), ``summary.md`` and ``miou_vs_fraction.png``."""
    rows = [row for r in records for row in r["rows"]]
    files = {"csv": write_csv(rows, out / "results.csv")}
    table = summarise(rows)
    files["summary"] = write_summary(sweep, table, out / "summary.md")
    if rows:
        files["plot"] = plot_miou(table, out / "miou_vs_fraction.png")
    return rows, files


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Flat CSV: the fixed columns, then ``iou_<class>`` for every class present in some row's truth."""
    import csv

    from fusionseg.export.writers import atomic_path

    classes = list(dict.fromkeys(c for r in rows for c in r.get("per_class_iou", {})))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*CSV_COLUMNS, *(f"iou_{c}" for c in classes)])
        for r in rows:
            iou = r.get("per_class_iou", {})
            w.writerow([_csv_cell(r.get(c)) for c in CSV_COLUMNS] + [_csv_cell(iou.get(c)) for c in classes])
    return path


def _csv_cell(value: Any) -> Any:
    return "" if value is None else value


@dataclass
class Cell:
    """Mean and sample standard deviation over seeds (std None with one value)."""

    values: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None


def summarise(rows: Sequence[dict]) -> dict[float, dict[str, dict]]:
    """fraction -> variant -> {metric: Cell, "kind", "seeds", "paired"} with paired mIoU differences against
    the first model variant: ``paired`` = (per-seed differences, seeds won) (baselines: one value, every seed)."""
    table: dict[float, dict[str, dict]] = {}
    for r in rows:
        entry = table.setdefault(r["fraction"], {}).setdefault(
            r["variant"], {"kind": r["kind"], "seeds": {}, **{m: Cell([]) for m in METRICS}}
        )
        entry["seeds"][r["seed"]] = r["miou"]
        for m in METRICS:
            if r.get(m) is not None:
                entry[m].values.append(float(r[m]))
    for by_variant in table.values():
        models = [v for v, e in by_variant.items() if e["kind"] == "model"]
        if not models:
            continue
        ref = by_variant[models[0]]["seeds"]
        for e in by_variant.values():
            if e["kind"] == "baseline":
                diffs = [e["seeds"][None] - m for m in ref.values()]
            else:
                diffs = [e["seeds"][s] - ref[s] for s in ref if s in e["seeds"]]
            e["paired"] = (diffs, sum(d > 0 for d in diffs))
    return table


def _fmt(cell: Cell, digits: int, thousands: bool = False) -> str:
    if not cell.values:
        return "—"
    spec = f",.{digits}f" if thousands else f".{digits}f"
    text = format(cell.mean, spec)
    return text if cell.std is None else f"{text} ± {format(cell.std, spec)}"


DIGITS = {"miou": 3, "pixel_acc": 3, "modal_area_error_percent": 2, "train_seconds": 1, "infer_px_per_s": 0}
HEADERS = {"miou": "mIoU", "pixel_acc": "pixel acc.", "modal_area_error_percent": "modal-area error %",
           "train_seconds": "train s", "infer_px_per_s": "inference px/s"}  # fmt: skip


def fraction_table(by_variant: dict[str, dict]) -> list[str]:
    """Markdown rows of one EDS fraction: mean ± std per metric (bold: best mean), paired mIoU against the first."""
    models = [v for v, e in by_variant.items() if e["kind"] == "model"]
    ref = models[0] if models else None
    best = {}
    for m in METRICS:
        means = [e[m].mean for e in by_variant.values() if e[m].values]
        if means:
            best[m] = max(means) if HIGHER_IS_BETTER[m] else min(means)
    head = [HEADERS[m] for m in METRICS[:3]] + [f"Δ mIoU vs {ref}", "seeds won"] + [HEADERS[m] for m in METRICS[3:]]
    lines = ["| variant | " + " | ".join(head) + " |", "|" + " --- |" * (len(head) + 1)]
    for name, e in by_variant.items():
        cells = []
        for m in METRICS:
            text = _fmt(e[m], DIGITS[m], thousands=m == "infer_px_per_s")
            bold = e[m].values and math.isclose(round(e[m].mean, DIGITS[m]), round(best[m], DIGITS[m]))
            cells.append(f"**{text}**" if bold else text)
        diffs, wins = e.get("paired", ([], 0))
        if name == ref or not diffs:
            delta, won = "—", "—"
        else:
            spread = f" ± {Cell(diffs).std:.3f}" if len(diffs) > 1 else ""
            delta, won = f"{Cell(diffs).mean:+.3f}{spread}", f"{wins}/{len(diffs)}"
        label = f"{name} (baseline)" if e["kind"] == "baseline" else name
        lines.append(f"| {label} | " + " | ".join([*cells[:3], delta, won, *cells[3:]]) + " |")
    return lines


def write_summary(sweep: Sweep, table: dict[float, dict[str, dict]], path: Path) -> Path:
    """``summary.md``: the protocol in words, one table per EDS fraction, the plot, each variant's overrides."""
    from fusionseg.export.writers import atomic_path

    configs = sorted({c for v in sweep.variants for c in v.configs})
    plural = "" if sweep.budget == 1 else "s"
    budget = f"{sweep.budget} epoch{plural}" if sweep.budget is not None else "the config's trainer.max_epochs"
    seeds = ", ".join(str(s) for s in sweep.seeds)
    lines = [
        "# fusionseg compare",
        "",
        f"Config(s): {', '.join(configs)}. Each variant trained once per seed ({seeds}; seed_everything: weights and "
        f"batch order, the data splits stay fixed) for {budget} (trainer.max_time off), then scored on the config's "
        "held-out test split, the same fields at every EDS fraction. Cells: mean ± sample std over seeds; bold: best "
        "mean per column. Δ mIoU: paired by seed against the first variant (mean ± std of the differences); seeds "
        "won: seeds where the variant's mIoU is higher. Baselines are deterministic (one value, compared with every "
        "seed of the first variant). A difference smaller than its std is not a result.",
    ]
    for f in sorted(table):
        lines += ["", f"## EDS fraction {100 * f:g} %", "", *fraction_table(table[f])]
    if table:
        lines += ["", "![mIoU against EDS fraction](miou_vs_fraction.png)"]
    lines += ["", "Overrides per variant:", ""]
    lines += [f"- {v.name}: `{json.dumps(dict(v.overrides), sort_keys=True)}` on {', '.join(v.configs)}"
              for v in sweep.variants]  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def plot_miou(table: dict[float, dict[str, dict]], path: Path) -> Path:
    """mIoU (mean, error bars: std over seeds) against the EDS fraction, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fusionseg.export.writers import save_figure

    fractions = sorted(table)
    names = list(dict.fromkeys(v for f in fractions for v in table[f]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # tab20's ten strong colours, then their light shades
    colours = plt.get_cmap("tab20")([order[i % 20] for i in range(len(names))])
    for name, colour in zip(names, colours, strict=True):
        entries = [(100 * f, table[f][name]) for f in fractions if name in table[f]]
        xs = [x for x, _ in entries]
        ys = [e["miou"].mean for _, e in entries]
        err = [e["miou"].std or 0.0 for _, e in entries]
        baseline = entries[0][1]["kind"] == "baseline"
        ax.errorbar(xs, ys, yerr=err, fmt="--" if baseline else "-", marker="s" if baseline else "o", capsize=3,
                    label=f"{name} (baseline)" if baseline else name, color=colour)  # fmt: skip
    xs = [100 * f for f in fractions]
    ax.set(xscale="log", xlabel="EDS fraction of pixels (%)", ylabel="mIoU (test split)", ylim=(0, 1))
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)
