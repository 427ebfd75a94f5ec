"""Point encoders: element windows, PCA, learned CNN, identity."""

from __future__ import annotations

import pytest
import torch

from fusionseg.registry import POINT_ENCODERS
from fusionseg.sem.encoders import DEFAULT_ELEMENTS, EncoderError, detector_fwhm_ev
from fusionseg.sem.meta import EnergyAxis

BRUKER = EnergyAxis(2048, 10.0, -470.0)
OTHER = EnergyAxis(1024, 20.0, 0.0)


def peak(axis: EnergyAxis, energy_ev: float, counts: float = 1e4) -> torch.Tensor:
    """A detector-broadened Gaussian peak of ``counts`` total counts at ``energy_ev``, (1, C)."""
    sigma = float(detector_fwhm_ev(torch.tensor(energy_ev))) / 2.3548
    e = axis.energies_ev().float()
    g = torch.exp(-0.5 * ((e - energy_ev) / sigma) ** 2)
    return (counts * g / g.sum())[None]


def labelled_spectra(axis: EnergyAxis, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson spectra (n, C) of three 'phases' (different peak sets) on a flat continuum, and phase ids (n,)."""
    gen = torch.Generator().manual_seed(seed)
    lines = [(1740.0, 6404.0), (1487.0, 3692.0), (2307.0, 8040.0)]
    means = torch.cat([sum(peak(axis, e, 3000.0) for e in ls) + 0.5 for ls in lines])
    which = torch.randint(0, 3, (n,), generator=gen)
    return torch.poisson(means[which], generator=gen), which


def phase_spectra(axis: EnergyAxis, n: int, seed: int = 0) -> torch.Tensor:
    return labelled_spectra(axis, n, seed)[0]


@pytest.mark.parametrize("axis", [BRUKER, OTHER], ids=["2048ch-10eV", "1024ch-20eV"])
@pytest.mark.parametrize(("element", "energy"), [("Si", 1740.0), ("Fe", 6404.0), ("Ca", 3692.0)])
def test_element_windows_put_a_peak_in_its_element_column(axis: EnergyAxis, element: str, energy: float) -> None:
    enc = POINT_ENCODERS.create("element-windows", energy_axis=axis)
    feats = enc(peak(axis, energy))[0]
    col = enc.elements.index(element)
    assert enc.out_dim == len(DEFAULT_ELEMENTS) == feats.shape[0]
    assert int(feats.argmax()) == col
    assert feats[col] > 0.75  # a 1.2-FWHM box holds ~84 % of a Gaussian peak
    # Neighbouring lines share counts (Fe Ka / Mn Kb, Ca Ka / K Kb); Si Ka has no neighbour in the list.
    if element == "Si":
        assert torch.cat([feats[:col], feats[col + 1 :]]).max() < 0.05


@pytest.mark.parametrize("axis", [BRUKER, OTHER], ids=["2048ch-10eV", "1024ch-20eV"])
def test_separated_elements_get_exclusive_columns(axis: EnergyAxis) -> None:
    enc = POINT_ENCODERS.create("element-windows", energy_axis=axis, elements=["Si", "Ca", "Fe"])
    feats = enc(torch.cat([peak(axis, 1740.0), peak(axis, 3692.0), peak(axis, 6404.0)]))
    assert torch.all(feats.diagonal() > 0.75)
    assert (feats - torch.diag(feats.diagonal())).abs().max() < 0.01


def test_window_width_follows_detector_fwhm() -> None:
    enc = POINT_ENCODERS.create("element-windows", energy_axis=BRUKER, elements=["O", "Cu"], width_fwhm=1.2)
    # O has one K line group: window width (eV) = 1.2 x FWHM(525 eV), to within a channel.
    width_ev = float(enc.weights[:, 0].sum()) * BRUKER.scale_ev
    assert width_ev == pytest.approx(1.2 * float(detector_fwhm_ev(torch.tensor(524.9))), abs=BRUKER.scale_ev)
    assert enc.weights[:, 1].sum() > 3 * enc.weights[:, 0].sum()  # Cu: K and L windows, wider at higher E


def test_only_lines_the_beam_excites() -> None:
    e = BRUKER.energies_ev()
    near_fe_ka = (e > 6300) & (e < 6500)
    hot = POINT_ENCODERS.create("element-windows", energy_axis=BRUKER, elements=["Fe"], beam_energy_kev=20.0)
    cold = POINT_ENCODERS.create("element-windows", energy_axis=BRUKER, elements=["Fe"], beam_energy_kev=5.0)
    assert hot.weights[near_fe_ka, 0].sum() > 5  # Fe K edge 7.11 keV < 20 keV
    assert cold.weights[near_fe_ka, 0].sum() == 0  # ... but > 5 keV: only Fe L remains
    assert cold.weights[(e > 650) & (e < 760), 0].sum() > 3


@pytest.mark.parametrize("elements", [["Si", "Xx"], [], "Si", ["Si", "Si"]])
def test_bad_element_lists_raise_clear_errors(elements: object) -> None:
    with pytest.raises(EncoderError, match="element|symbol"):
        POINT_ENCODERS.create("element-windows", energy_axis=BRUKER, elements=elements)
    assert issubclass(EncoderError, ValueError)


def test_element_off_the_axis_raises() -> None:
    with pytest.raises(EncoderError, match="Zn"):
        POINT_ENCODERS.create("element-windows", energy_axis=EnergyAxis(40, 20.0, 0.0), elements=["O", "Zn"])


def test_wrong_channel_count_names_the_fix() -> None:
    enc = POINT_ENCODERS.create("element-windows", energy_axis=BRUKER)
    with pytest.raises(EncoderError, match="set_energy_axis"):
        enc(torch.ones(3, 1024))


def test_state_dict_moves_between_calibrations() -> None:
    train = phase_spectra(BRUKER, 60)
    a = POINT_ENCODERS.create("element-windows", energy_axis=BRUKER).fit(train)
    b = POINT_ENCODERS.create("element-windows", energy_axis=OTHER)
    b.load_state_dict(a.state_dict())  # window matrices are rebuilt per axis, not saved
    fa, fb = a(peak(BRUKER, 1740.0)), b(peak(OTHER, 1740.0))
    si = a.elements.index("Si")
    assert fb[0, si] == pytest.approx(float(fa[0, si]), rel=0.1)
    assert torch.equal(a.feature_std, b.feature_std)


def test_element_windows_fit_standardises() -> None:
    train = phase_spectra(BRUKER, 200)
    enc = POINT_ENCODERS.create("element-windows", energy_axis=BRUKER, elements=["Si", "Fe", "Al", "Ca"]).fit(train)
    f = enc(train)
    assert torch.allclose(f.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(f.std(0), torch.ones(4), atol=1e-3)


@pytest.mark.parametrize("mode", ["none", "total", "sqrt", "hellinger"])
def test_normalisation_scaling(mode: str) -> None:
    enc = POINT_ENCODERS.create("element-windows", energy_axis=BRUKER, normalise=mode, standardise=False)
    s = phase_spectra(BRUKER, 5) + 1.0
    ratio = enc(10 * s) / enc(s)
    expected = {"none": 10.0, "total": 1.0, "sqrt": 10**0.5, "hellinger": 1.0}[mode]
    assert torch.allclose(ratio[torch.isfinite(ratio)], torch.tensor(expected), rtol=1e-4)


def test_bad_normalise_raises() -> None:
    with pytest.raises(EncoderError, match="normalise"):
        POINT_ENCODERS.create("pca", energy_axis=BRUKER, normalise="log")


@pytest.mark.parametrize("axis", [BRUKER, OTHER], ids=["2048ch", "1024ch"])
def test_pca_fit_whitens_and_round_trips(axis: EnergyAxis) -> None:
    train = phase_spectra(axis, 120)
    enc = POINT_ENCODERS.create("pca", energy_axis=axis, n_components=4)
    with pytest.raises(EncoderError, match="fit"):
        enc(train)
    enc.fit(train)
    out = enc(train)
    assert out.shape == (120, 4) == (120, enc.out_dim)
    assert torch.allclose(out.mean(0), torch.zeros(4), atol=1e-3)
    assert torch.allclose(out.std(0), torch.ones(4), atol=1e-3)
    fresh = POINT_ENCODERS.create("pca", energy_axis=axis, n_components=4)
    fresh.load_state_dict(enc.state_dict())
    assert torch.equal(fresh(train), out)


def test_pca_separates_phases() -> None:
    train, which = labelled_spectra(BRUKER, 90, seed=1)
    out = POINT_ENCODERS.create("pca", energy_axis=BRUKER, n_components=2).fit(train)(train)
    # Three phases -> three tight, well separated clusters in the first two (whitened) components.
    centres = torch.stack([out[which == k].mean(0) for k in range(3)])
    spread = max(float((out[which == k] - centres[k]).norm(dim=1).max()) for k in range(3))
    assert torch.pdist(centres).min() > 5 * spread


def test_pca_too_few_spectra() -> None:
    with pytest.raises(EncoderError, match="at least"):
        POINT_ENCODERS.create("pca", energy_axis=BRUKER, n_components=8).fit(phase_spectra(BRUKER, 3))


def test_rebinning_preserves_counts() -> None:
    enc = POINT_ENCODERS.create("pca", energy_axis=OTHER, normalise="none")
    s = phase_spectra(OTHER, 4)
    inside = s @ enc.valid_mask  # counts from 100 eV to the beam energy
    assert torch.allclose((s @ enc.rebin).sum(1), inside, rtol=1e-4, atol=0.5)


def test_learned_encoder_trains_and_round_trips() -> None:
    torch.manual_seed(0)
    train = phase_spectra(BRUKER, 32)
    enc = POINT_ENCODERS.create("learned", energy_axis=BRUKER, out_dim=6).fit(train)
    out = enc(train)
    assert out.shape == (32, 6) == (32, enc.out_dim)
    out.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    fresh = POINT_ENCODERS.create("learned", energy_axis=BRUKER, out_dim=6)
    fresh.load_state_dict(enc.state_dict())
    assert fresh.input_scale == enc.input_scale
    assert torch.equal(fresh(train), enc(train))


def test_identity_encoder() -> None:
    from fusionseg.contracts import ContractError

    enc = POINT_ENCODERS.create("identity", in_dim=7)
    x = torch.randn(5, 7)
    assert enc.out_dim == 7 and torch.equal(enc(x), x)
    total = POINT_ENCODERS.create("raw", in_dim=3, normalise="total")(torch.tensor([[1.0, 1.0, 2.0]]))
    assert torch.allclose(total, torch.tensor([[0.25, 0.25, 0.5]]))
    with pytest.raises(ContractError, match="7"):
        enc(torch.randn(5, 6))
    with pytest.raises(ContractError, match="in_dim"):
        POINT_ENCODERS.create("identity", in_dim=0)


def test_one_rebinning_and_one_hellinger_pca_serve_encoders_identification_and_adaptation() -> None:
    """`fusionseg.sem.spectrum` replaced two pairs of implementations; each reproduces what both did before."""
    import numpy as np

    from fusionseg.sem.identify import spectrum_features
    from fusionseg.sem.spectrum import overlap_matrix, rebin_spectra

    x, _ = labelled_spectra(BRUKER, 40)
    # rebin_spectra was cumulative counts interpolated at the target channel edges (dst partly beyond src)
    dst = EnergyAxis(900, 27.3, -333.0)

    def edges(a: EnergyAxis) -> np.ndarray:
        return np.append(a.energies_ev().numpy() - a.scale_ev / 2, a.offset_ev + (a.size - 0.5) * a.scale_ev)

    cum = np.concatenate([np.zeros((len(x), 1)), np.cumsum(x.double().numpy(), 1)], 1)
    old = np.diff(np.stack([np.interp(edges(dst), edges(BRUKER), row) for row in cum]), axis=1)
    np.testing.assert_allclose(rebin_spectra(x, BRUKER, dst).numpy(), old, rtol=1e-5, atol=1e-3)
    # the encoders' grid was overlap_matrix over [min + k bin, min + (k + 1) bin)
    enc = POINT_ENCODERS.create("pca", energy_axis=OTHER, n_components=4)
    lo = enc.min_energy_ev + enc.bin_ev * torch.arange(enc.num_bins, dtype=torch.float64)
    assert torch.allclose(enc.rebin, overlap_matrix(OTHER, lo, lo + enc.bin_ev), atol=1e-6)
    # PCAEncoder.fit: SVD of the rebinned Hellinger spectra, signs fixed, whitened
    y = POINT_ENCODERS.create("pca", energy_axis=BRUKER, n_components=3).fit(x)(x).double()
    r = enc.__class__(energy_axis=BRUKER, n_components=3).rebinned(x).double()
    _, s, vh = torch.linalg.svd(r - r.mean(0), full_matrices=False)
    vh = vh[:3] * torch.sign(vh[:3].gather(1, vh[:3].abs().argmax(1, keepdim=True)))
    assert torch.allclose(y, (r - r.mean(0)) @ vh.T / (s[:3] / (len(r) - 1) ** 0.5), atol=1e-3)
    # spectrum_features (k-means input of identification): the same PCA on all-channel Hellinger spectra;
    # only column signs may differ from before (exact negation: k-means distances unchanged)
    h = (x.double() / x.double().sum(1, keepdim=True)).sqrt()
    _, _, vh = torch.linalg.svd(h - h.mean(0), full_matrices=False)
    before, now = (h - h.mean(0)) @ vh[:5].T, spectrum_features(x, 5)
    assert torch.allclose(now.abs(), before.abs(), atol=1e-9) and torch.cdist(now, now).allclose(
        torch.cdist(before, before)
    )


def test_identification_in_reused_float64_chunks_equals_one_pass(monkeypatch) -> None:
    """Spectra are converted to float64 a chunk at a time into one reused buffer (`float64_chunks`): labels,
    confidence, deviance, clusters and their references are those of converting every spectrum at once."""
    import fusionseg.sem.identify as identify
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.minerals import class_names

    s = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=64, rocks=["granite"], eds_fraction=0.05)[0]
    axis, spectra = s.meta.domain.energy_axis, s.point_features
    refs, usable = identify.library_references(tuple(class_names()), axis)

    def everything() -> tuple:
        ident = identify.identify_spectra(spectra, refs, allowed=usable)
        points = identify.label_points(spectra, axis, mode="clusters", n_clusters=3)
        return (ident.labels, ident.confidence, ident.deviance, points.labels, points.confidence,
                identify.cluster_references(spectra, points.labels))  # fmt: skip

    whole = everything()
    monkeypatch.setattr(identify, "CHUNK_SPECTRA", 7)  # ~200 spectra: ~30 chunks
    assert len(list(identify.float64_chunks(spectra))) == -(-len(spectra) // 7)
    for a, b in zip(whole, everything(), strict=True):
        assert torch.allclose(a.double(), b.double(), rtol=1e-12, atol=1e-9)
