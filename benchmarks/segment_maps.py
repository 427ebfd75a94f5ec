"""Accuracy of `fusionseg segment`'s maps (shipped weights) on synthetic fields, to compare two versions of the code.

    PYTHONPATH=. .venv/bin/python benchmarks/segment_maps.py [--size 512] [--fraction 0.01] [--seeds 2] [--tile 512]
    PYTHONPATH=. .venv/bin/python benchmarks/segment_maps.py --tiles 240:128 400:192 512:288

The first runs `segment_field` on every rock type x seeds (seed 2000 + i, never the test or validation seeds) and
prints each field's model-map mIoU, pixel accuracy and held-out check share, then their means. ``--tiles
SIZE:TILE ...`` predicts one granite field per pair whole and in TILE-px tiles and prints the tiled map's
agreement with the whole one and both pixel accuracies. Run it on two checkouts (``git worktree``) to compare them.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def field(size: int, rock: str, fraction: float, seed: int):
    from fusionseg.registry import DATA_SOURCES

    return DATA_SOURCES.create("sem-synthetic", num_fields=1, size=size, rocks=[rock], eds_fraction=fraction,
                               seed=seed)[0]  # fmt: skip


def segment_rows(size: int, fraction: float, seeds: int, tile: int = 512) -> list[dict]:
    """Per field: mIoU and pixel accuracy of segment's model map against the simulator's truth, held-out share and
    seconds; ``tile``: segment's prediction tile (px)."""
    import time

    from fusionseg.models.metrics import field_metrics
    from fusionseg.pretrain import shipped_weights_path
    from fusionseg.sem.data.synthetic import rock_names
    from fusionseg.sem.segment import SegmentConfig, segment_field

    rows = []
    for i, rock in enumerate(list(rock_names()) * seeds):
        s = field(size, rock, fraction, 2000 + i)
        unlabelled = type(s)(**{**vars(s), "point_target": None, "target": None})
        start = time.perf_counter()
        res = segment_field(unlabelled, shipped_weights_path("default"), SegmentConfig(seed=0, progress=False,
                                                                                       tile_px=tile))  # fmt: skip
        seconds = round(time.perf_counter() - start, 1)
        index = {n: k for k, n in enumerate(s.meta.class_names)}
        mapped = torch.tensor([index.get(n, -1) for n in res.class_names])[res.model_labels]
        m = field_metrics(mapped, s.target, len(s.meta.class_names))
        rows.append({"rock": rock, "seed": 2000 + i, "miou": round(m["miou"], 4), "pixel_acc": round(m["pixel_acc"], 4),
                     "held_out_share": res.qc["held_out"]["share"], "tile": tile, "seconds": seconds})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def tile_rows(pairs: list[str]) -> list[dict]:
    """Per SIZE:TILE pair: the tiled map's agreement with the whole-field map and both maps' pixel accuracy."""
    from fusionseg.inference import predict_field
    from fusionseg.pretrain import load_weights
    from fusionseg.sem.identify import with_identified_point_labels

    model, rows = load_weights().eval(), []
    for i, pair in enumerate(pairs):
        size, tile = (int(v) for v in pair.split(":"))
        s = with_identified_point_labels(field(size, "granite", 0.01, i))
        truth = s.target.numpy()
        whole = predict_field(model, s, tile_px=size)[0].numpy()
        tiled = predict_field(model, s, tile_px=tile)[0].numpy()
        rows.append({"size": size, "tile": tile, "agreement": round(float((tiled == whole).mean()), 4),
                     "whole_acc": round(float((whole == truth).mean()), 4),
                     "tiled_acc": round(float((tiled == truth).mean()), 4)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--seeds", type=int, default=2, help="fields per rock type")
    p.add_argument("--tile", type=int, default=512, help="segment's prediction tile (px; SegmentConfig's default)")
    p.add_argument("--tiles", nargs="+", help="SIZE:TILE pairs: tiled against whole-field prediction instead")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.tiles:
        rows = tile_rows(a.tiles)
        print("mean tiled pixel accuracy", round(float(np.mean([r["tiled_acc"] for r in rows])), 4))
        return
    rows = segment_rows(a.size, a.fraction, a.seeds, a.tile)
    print("mean mIoU", round(float(np.mean([r["miou"] for r in rows])), 4),
          "pixel accuracy", round(float(np.mean([r["pixel_acc"] for r in rows])), 4))  # fmt: skip


if __name__ == "__main__":
    main()
