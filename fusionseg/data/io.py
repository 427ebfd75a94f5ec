"""Disk format of samples: one compressed ``.npz`` per field, JSON metadata inside.

A sample file ``<name>.npz`` (``numpy.savez_compressed``, readable with ``allow_pickle=False``) holds

==================  ==========================  ==============================================
key                 dtype / shape               meaning
==================  ==========================  ==============================================
``image``           float32 (C, H, W)           dense image (normalised BSE)
``point_coords``    float64 (N, 2)              (row, col) in pixels
``point_features``  uint16 or float32 (N, D)    raw spectra (uint16 when whole counts < 65536,
                                                lossless) or encoded features
``target``          int32 (H, W), optional      class ids, -1 = unlabelled (float32 (H, W) or
                                                (K, H, W): regression values, NaN = unlabelled)
``point_target``    int32 (N,), optional        class ids of the points (float32: values)
``meta``            0-d unicode string          JSON, see below
``domain.<key>``    any, optional               the domain slot's arrays (`DomainMeta` ``arrays()``,
                                                e.g. SEM's ``dense_spectra`` (H, W, C) counts)
==================  ==========================  ==============================================

``meta`` JSON: ``{"format": "fusionseg-sample", "version": 2, "class_names": [...], "pixel_size_um",
"name", "domain": {"name": <DOMAINS entry>, ...its to_dict()} | null, "extra": {...}}`` (pixel size in
µm). Version 1 files (SEM fields: ``energy_axis``, ``beam_energy_kev``, ``fwhm_mn_ka_ev`` at the top
level) are read as the ``sem`` domain; files without ``domain.<key>`` arrays load with none (older
version 2 files kept such side data in ``extra``, which loads as it was).

A dataset folder holds the sample files plus ``index.json`` (``{"format": "fusionseg-dataset",
"version": 1, "files": [...], "class_names": [...]}``). Files are written atomically
(temporary file, then rename).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionseg.export.safe_io import atomic_path
from fusionseg.registry import DATA_SOURCES, DOMAINS
from fusionseg.sample import Sample, SampleError, SampleMeta

FORMAT_VERSION = 2


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(
        f"metadata value {obj!r} (meta.extra or the domain's to_dict()) is not JSON-serialisable; store plain "
        "numbers, strings or lists (arrays of a domain: its arrays() hook)."
    )


def _meta_to_json(meta: SampleMeta) -> str:
    domain = None if meta.domain is None else {"name": meta.domain.domain, **meta.domain.to_dict()}
    return json.dumps(
        {
            "format": "fusionseg-sample",
            "version": FORMAT_VERSION,
            "class_names": list(meta.class_names),
            "domain": domain,
            "pixel_size_um": meta.pixel_size_um,
            "name": meta.name,
            "extra": meta.extra,
        },
        default=_json_default,
    )


DOMAIN_ARRAY = "domain."
"""Prefix of the sample file keys that hold the domain slot's arrays."""


def _meta_from_json(text: str, path: Path, arrays: Mapping[str, np.ndarray] | None = None) -> SampleMeta:
    """``arrays``: the domain slot's arrays by key, given to its ``from_dict`` with the JSON fields."""
    d = json.loads(text)
    if d.get("format") != "fusionseg-sample" or int(d.get("version", 0)) > FORMAT_VERSION:
        raise SampleError(f"{path} is not a fusionseg sample file of version <= {FORMAT_VERSION}.")
    domain = d.get("domain")
    if int(d.get("version", 0)) < 2 and "beam_energy_kev" in d:  # version 1: SEM fields at the top level
        domain = {"name": "sem", **{k: d.get(k) for k in ("energy_axis", "beam_energy_kev", "fwhm_mn_ka_ev")}}
    return SampleMeta(
        class_names=tuple(d.get("class_names", ())),
        domain=None if domain is None else DOMAINS.get(domain.pop("name")).from_dict({**domain, **(arrays or {})}),
        pixel_size_um=float(d["pixel_size_um"]),
        name=str(d.get("name", "")),
        extra=dict(d.get("extra", {})),
    )


def _compact_features(feats: np.ndarray) -> np.ndarray:
    """uint16 when every value is a whole count below 65536 (lossless), else float32."""
    if feats.size and feats.min() >= 0 and feats.max() < 65536 and np.all(feats == np.round(feats)):
        return feats.astype(np.uint16)
    return feats.astype(np.float32)


def save_sample(sample: Sample, path: str | Path) -> Path:
    """Write ``sample`` to ``path`` (``.npz`` added if missing), atomically. Returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays: dict[str, np.ndarray] = {
        "image": sample.image.detach().cpu().float().numpy(),
        "point_coords": sample.point_coords.detach().cpu().double().numpy(),
        "point_features": _compact_features(sample.point_features.detach().cpu().numpy()),
        "meta": np.array(_meta_to_json(sample.meta)),
    }
    arrays |= {DOMAIN_ARRAY + k: np.asarray(v) for k, v in sample.meta.domain_arrays().items()}
    for key in ("target", "point_target"):  # class ids as int32, regression values as float32
        value = getattr(sample, key)
        if value is not None:
            arrays[key] = value.cpu().numpy().astype(np.float32 if value.is_floating_point() else np.int32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_sample(path: str | Path) -> Sample:
    """Read a sample written by `save_sample`."""
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"Sample file {path} does not exist.")
    with np.load(path, allow_pickle=False) as z:
        missing = {"image", "point_coords", "point_features", "meta"} - set(z.files)
        if missing:
            raise SampleError(f"{path} lacks {sorted(missing)}; it was not written by fusionseg.data.io.save_sample.")
        held = {k.removeprefix(DOMAIN_ARRAY): z[k] for k in z.files if k.startswith(DOMAIN_ARRAY)}
        meta = _meta_from_json(str(z["meta"]), path, held)
        return Sample(
            image=torch.from_numpy(z["image"]),
            point_coords=torch.from_numpy(z["point_coords"]),
            point_features=torch.from_numpy(z["point_features"].astype(np.float32)),
            meta=meta,
            target=torch.from_numpy(z["target"]) if "target" in z.files else None,  # ids -> int64 in Sample
            point_target=torch.from_numpy(z["point_target"]) if "point_target" in z.files else None,
        )


def _atomic_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_dataset(samples: Iterable[Sample], folder: str | Path) -> list[Path]:
    """Write samples as ``00000_<name>.npz``, ... plus ``index.json`` into ``folder``. Returns the file paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, names = [], ()
    for i, sample in enumerate(samples):
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sample.meta.name) or "sample"
        paths.append(save_sample(sample, folder / f"{i:05d}_{stem}.npz"))
        names = names or sample.meta.class_names
    index = {"format": "fusionseg-dataset", "version": FORMAT_VERSION, "files": [p.name for p in paths]}
    index["class_names"] = list(names)
    _atomic_text(folder / "index.json", json.dumps(index, indent=1))
    return paths


SPLIT_SHARES = {"train": 0.6, "val": 0.1, "test": 0.2, "predict": 0.1}
"""Default share of a file source's files per split (disjoint blocks of one fixed shuffle)."""


def split_paths(
    paths: Sequence[Path] | Mapping[str, Sequence[str | Path]],
    split: str | None,
    num_fields: int | None = None,
    shares: Mapping[str, float] | None = None,
) -> list[Path]:
    """The files one split of a file source serves; the splits never share a file.

    ``paths``: every file (sorted, shuffled once with a fixed seed, cut into consecutive blocks by
    ``shares``, default `SPLIT_SHARES`; every split with a share gets at least one file, the first the
    rest), or a mapping split -> its own files (explicit lists). ``split``
    None: every file (direct use, no datamodule). At most ``num_fields`` files are kept.
    """
    if isinstance(paths, Mapping):
        chosen = (
            [Path(p) for p in paths.get(split, [])]
            if split is not None
            else [Path(p) for v in paths.values() for p in v]
        )
    elif split is None:
        chosen = list(paths)
    else:
        shares = dict(shares or SPLIT_SHARES)
        if split not in shares or any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
            raise SampleError(
                f"split_shares {shares} must give every split ({', '.join(SPLIT_SHARES)}) a share >= 0, "
                f"including {split!r}."
            )
        order = sorted(paths, key=str)
        np.random.default_rng(0).shuffle(order)  # fixed: the same partition for every split's source
        names, total = list(shares), sum(shares.values())
        counts = [0] + [max(1, round(shares[n] / total * len(order))) if shares[n] > 0 else 0 for n in names[1:]]
        counts[0] = max(0, len(order) - sum(counts))  # the first split (train) takes the rest
        bounds = np.cumsum([0] + counts)
        k = names.index(split)
        chosen = order[bounds[k] : bounds[k + 1]]
    if not chosen:
        raise SampleError(
            f"the {split} split has no files (of {len(paths)}); give more files, other split_shares, or explicit "
            "lists per split (paths: {train: [...], val: [...], test: [...]})."
        )
    return chosen[:num_fields] if num_fields is not None else chosen


@DATA_SOURCES.register("sample-folder")
class SampleFolder:
    """Random access to a folder of sample files (``index.json`` order, else sorted ``*.npz``), e.g. what
    ``fusionseg simulate`` writes. Given a ``split`` (the datamodule does), it serves that split's share of
    the files (`split_paths`; ``split_shares`` overrides `SPLIT_SHARES`)."""

    def __init__(
        self,
        root: str | Path,
        pattern: str = "*.npz",
        split: str | None = None,
        num_fields: int | None = None,
        seed: int = 0,
        split_shares: dict[str, float] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SampleError(f"Sample folder {self.root} does not exist; write one with `fusionseg simulate`.")
        index = self.root / "index.json"
        if index.is_file():
            self.files = [self.root / f for f in json.loads(index.read_text())["files"]]
        else:
            self.files = sorted(self.root.glob(pattern))
        if not self.files:
            raise SampleError(f"No sample files matching {pattern!r} in {self.root}.")
        self.files = split_paths(self.files, split, num_fields, split_shares)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        return load_sample(self.files[index])
