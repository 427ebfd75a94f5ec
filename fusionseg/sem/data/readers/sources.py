"""The readers' entry point `read_input` (file or folder -> `Sample`) and the registered data sources
(``eds-file``, ``sem-folder``) that serve real files to `FusionSegDataModule`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fusionseg.data.io import split_paths
from fusionseg.registry import DATA_SOURCES
from fusionseg.sample import Sample, SampleError
from fusionseg.sem.data.readers.common import IMAGE_SUFFIXES, ReaderError, read_image_file
from fusionseg.sem.data.readers.folders import read_folder
from fusionseg.sem.data.readers.vendor import read_signals, sample_from_signals
from fusionseg.sem.meta import EnergyAxis, sem_meta


def read_input(
    path: str | Path,
    image: str | Path | None = None,
    bse_title: str | None = None,
    energy_axis: EnergyAxis | None = None,
    beam_energy_kev: float | None = None,
) -> Sample:
    """Read any supported input (vendor EDS file, ``.hspy``, folder) into a `Sample`.

    Args:
        path: EDS file or folder.
        image: separate BSE/SE image (TIFF/PNG) on the EDS map's pixel grid; overrides the file's image.
        bse_title: pick the file's image whose title contains this (default: a BSE-like title).
        energy_axis / beam_energy_kev: override the file's calibration (eV) / beam energy (keV).
    """
    path = Path(path)
    try:
        if path.is_dir():
            return read_folder(path, image, energy_axis, beam_energy_kev)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():  # RosettaSciIO reads it, lazily, as no EDS
            raise ReaderError(
                f"{path.name} is an image: pass it with --image, with the points in points.csv or eds.npz (a folder "
                f"holding {path.name} and points.csv or eds.npz is one field: give the folder), or beside the EDS "
                "file that holds the spectra."
            )
        img = read_image_file(Path(image)) if image is not None else None
        signals = read_signals(path)
        try:
            sample = sample_from_signals(signals, img, bse_title, energy_axis, beam_energy_kev, name=path.stem)
        except (ReaderError, SampleError):
            raise
        except Exception as err:  # lazy vendor data decoded here: a truncated copy fails inside the decompressor
            raise ReaderError(
                f"cannot read {path.name}: its data are damaged, truncated or corrupt ({type(err).__name__}: {err}). "
                "Copy the file again from the acquisition computer, or export it again from the vendor software."
            ) from err
    except SampleError as err:  # the data read fine but are not physical: say which input
        raise ReaderError(f"{path}: {err}") from err
    sem = sem_meta(sample.meta)
    sem.source_path = str(path)
    sample.meta.domain = sem
    return sample


@DATA_SOURCES.register("eds-file", "sem-file")
class EDSFileSource:
    """Registered data source over real files: ``DATA_SOURCES.create("eds-file", paths=[...])[i] -> Sample``.

    Extra keyword arguments (``image``, ``bse_title``, ``energy_axis``, ``beam_energy_kev``) go to
    `read_input`. Through `FusionSegDataModule` (``split``, ``num_fields``, ``seed``) each split serves
    its own files (`fusionseg.data.io.split_paths`: disjoint shares, ``split_shares``, or ``paths`` as a
    mapping split -> files); dense files are subsampled at ``eds_fraction`` by ``sampler``.
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path] | Mapping[str, Sequence[str | Path]],
        eds_fraction: float | None = None,
        sampler: str = "random",
        seed: int = 0,
        num_fields: int | None = None,
        split: str | None = None,
        split_shares: dict[str, float] | None = None,
        **read_kwargs: Any,
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        listed = paths if isinstance(paths, Mapping) else [Path(p) for p in paths]
        self.paths = split_paths(listed, split, num_fields, split_shares)
        self.eds_fraction, self.sampler, self.seed = eds_fraction, sampler, seed
        self.read_kwargs = read_kwargs

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        sample = read_input(self.paths[index], **self.read_kwargs)
        if sem_meta(sample.meta).dense_spectra is not None and self.eds_fraction:
            from fusionseg.sem.data.acquisition import sparse_acquisition

            sample = sparse_acquisition(
                sample, fraction=self.eds_fraction, sampler=self.sampler, seed=self.seed + index
            )
        return sample


@DATA_SOURCES.register("sem-folder", "repka-folder")
class FolderSource(EDSFileSource):
    """Registered data source over folders (image + eds.npz/points.csv + phases.tiff)."""
