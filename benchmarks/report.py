"""Markdown tables and plots from the benchmark JSON files in ``benchmarks/results/``.

python -m benchmarks --render      # re-render results/README.md and the plots from existing JSON
"""

from __future__ import annotations

import json
from pathlib import Path

PERCENT = {"0.001": "0.1 %", "0.005": "0.5 %", "0.01": "1 %", "0.05": "5 %"}
TRAINED_FIRST = (
    "default", "default-shipped", "grid_cross_cnn", "grid_late_sage", "knn_hetero_sage", "paper_gat",
    "paper_gat-shipped", "bse-only",
)  # fmt: skip


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _order(methods: list[str]) -> list[str]:
    first = [m for m in TRAINED_FIRST if m in methods]
    return first + [m for m in methods if m not in first]


def _cell(entry: dict, key: str, digits: int) -> str:
    return "failed" if "error" in entry else f"{entry[key]:.{digits}f}"


def accuracy_tables(acc: dict) -> str:
    """One table per case: mIoU per EDS fraction, pixel accuracy / modal error at 1 %, training budget."""
    fractions = acc["fractions"]
    ref = "0.01" if "0.01" in fractions else fractions[-1]
    lines = [
        "mIoU: over the classes present in the truth, from the confusion matrix pooled over the split (unidentified "
        "pixels count as wrong); modal-area error: mean |area % difference| per class and field.",
        "",
    ]
    for case, by_method in acc["results"].items():
        at = PERCENT.get(ref, ref)
        lines += [f"**{case}** (mIoU per EDS fraction; pixel accuracy and modal-area error at {at})", ""]
        head = ["method", *(f"mIoU {PERCENT.get(f, f)}" for f in fractions), "pixel acc", "modal err %", "training"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for m in _order(list(by_method)):
            row = by_method[m]
            budget = acc.get("training", {}).get(m)
            train = f"{budget['epochs']} ep, {budget['seconds']:.0f} s" if budget else "none"
            if m == "segment-per-field":
                train = f"on the field, {acc.get('per_field_budget_s', '?')} s"
            cells = [m, *(_cell(row[f], "miou", 3) for f in fractions), _cell(row[ref], "pixel_acc", 3),
                     _cell(row[ref], "modal_area_error_percent", 2), train]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        ident = acc["identification_accuracy"].get(case, {})
        lines += ["", "Point identification accuracy (library match of each measured spectrum): "
                  + ", ".join(f"{PERCENT.get(f, f)} {v:.3f}" for f, v in ident.items()), ""]  # fmt: skip
    if acc.get("repka2025"):
        mapping = ", ".join(f"{k}→{v}" for k, v in acc["repka2025"]["mapping"].items())
        lines += [f"repka2025 phase → mineral (simulated BSE order = real order): {mapping}", ""]
    return "\n".join(lines)


def speed_table(inf: dict) -> str:
    """Per config and size: seconds per stage, end-to-end pixels/s, peak RSS; growth exponent per config."""
    head = ["config", "size", "tiles", *(f"{k} s" for k in ("encode", "build", "forward", "decode", "total")),
            "px/s", "peak RSS GiB"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, block in inf["configs"].items():
        for r in block["results"]:
            if "error" in r:
                lines.append(f"| {name} | {r['size']}² | failed: {r['error']} |" + " |" * (len(head) - 3))
                continue
            s = r["seconds_median"]
            cells = [name, f"{r['size']}²", str(r.get("tiles", 1)), *(f"{s[k]:.2f}" for k in
                     ("encode", "build", "forward", "decode", "total")), f"{r['pixels_per_second']['total']:,}",
                     f"{r['peak_rss_mib'] / 1024:.2f}"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    exps = ", ".join(f"{n} {b['growth_exponent']}" for n, b in inf["configs"].items() if b["growth_exponent"])
    lines += ["", f"Growth exponent of total time against pixels (log-log slope, sizes ≥ 512 px): {exps}.", ""]
    return "\n".join(lines)


def summary_table(acc: dict, case: str, reference: str = "default-shipped") -> str:
    """README table of one case: mIoU / pixel accuracy per fraction for every row, then the reference's margin
    over the best classic method at each fraction (the classic rows are ``acc["classic"]``)."""
    fractions, rows = acc["fractions"], acc["results"][case]
    head = ["method", *(f"{PERCENT.get(f, f)}: mIoU / pixel acc." for f in fractions)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in _order(list(rows)):
        cells = [f"{rows[m][f]['miou']:.3f} / {rows[m][f]['pixel_acc']:.3f}" if "error" not in rows[m][f] else "failed"
                 for f in fractions]  # fmt: skip
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    classic = [m for m in acc.get("classic", []) if m in rows]
    if reference in rows and classic:
        cells = []
        for f in fractions:
            best = max(classic, key=lambda m: rows[m][f]["miou"])
            ours, theirs = rows[reference][f], rows[best][f]
            cells.append(f"{ours['miou'] - theirs['miou']:+.3f} / {ours['pixel_acc'] - theirs['pixel_acc']:+.3f} "
                         f"(vs {best})")  # fmt: skip
        lines.append(f"| **{reference} − best classic** | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def training_table(acc: dict) -> str:
    """Training throughput per method from the accuracy run (epochs x fields x pixels / seconds)."""
    size, fields = acc["protocol"]["size"], acc["protocol"]["train_fields"]
    lines = ["| method | epochs | batch | seconds | training px/s (incl. validation) |", "|" + " --- |" * 5]
    for m in _order(list(acc["training"])):
        b = acc["training"][m]
        rate = b["epochs"] * fields * size * size / max(b["seconds"], 1e-9)
        lines.append(f"| {m} | {b['epochs']} | {b.get('batch_size', '')} | {b['seconds']:.0f} | {rate:,.0f} |")
    return "\n".join(lines) + "\n"


def plot_accuracy(acc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(acc["results"])
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4.2), squeeze=False)
    xs = [100 * float(f) for f in acc["fractions"]]
    methods = _order(list(dict.fromkeys(m for case in cases for m in acc["results"][case])))
    colours = dict(zip(methods, plt.get_cmap("tab20")(range(len(methods))), strict=True))  # tab10 would repeat
    for ax, case in zip(axes[0], cases, strict=True):
        for m in _order(list(acc["results"][case])):
            ys = [acc["results"][case][m][f].get("miou", float("nan")) for f in acc["fractions"]]
            style = "--" if m in (*acc.get("classic", ()), "oracle-dense-eds", "bse-only") else "-"
            style = "-." if m == "ceiling-measured-phases" else style
            style = ":" if m == "segment-per-field" else style
            ax.plot(xs, ys, style, marker="o", label=m, color=colours[m])
        ax.set(xscale="log", xlabel="EDS fraction of pixels (%)", ylabel="mIoU", title=case, ylim=(0, 1))
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_speed(inf: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, block in inf["configs"].items():
        ok = [r for r in block["results"] if "error" not in r]
        ax.plot([r["size"] ** 2 for r in ok], [r["seconds_median"]["total"] for r in ok], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="pixels", ylabel="end-to-end seconds", title="inference, 2 threads")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(results: Path) -> Path:
    """Write ``results/README.md`` (+ PNG plots) from whatever JSON files exist; return the Markdown path."""
    acc, inf = _load(results / "accuracy.json"), _load(results / "inference.json")
    machine = (acc or inf or {}).get("machine", {})
    parts = ["# Benchmark results", "", f"Machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs, "
             f"threads pinned to 2; date {machine.get('date', '?')}; quick mode: {machine.get('quick', '?')}.",
             ""]  # fmt: skip
    if acc:
        p = acc["protocol"]
        parts += ["## Accuracy", "", f"Held-out synthetic split: {p['fields_per_rock']} field(s) per rock type × "
                  f"{len(p['rocks'])} rocks, {p['size']}² px, seed {p['test_seed']}; models trained on "
                  f"{p['train_fields']} fields with EDS fractions drawn in {p['train_eds_fraction']}. "
                  f"Suite time {acc.get('seconds', '?')} s.", "", accuracy_tables(acc),
                  "![mIoU against EDS fraction](accuracy_miou.png)", "", "## Against classic propagation", "",
                  *(f"**{case}**\n\n{summary_table(acc, case)}" for case in acc["results"]),
                  "## Training throughput", "",
                  training_table(acc)]  # fmt: skip
        plot_accuracy(acc, results / "accuracy_miou.png")
    if inf:
        parts += ["## Inference speed and memory", "", speed_table(inf), "![time vs pixels](inference_scaling.png)"]
        plot_speed(inf, results / "inference_scaling.png")
    out = results / "README.md"
    out.write_text("\n".join(parts) + "\n")
    return out
