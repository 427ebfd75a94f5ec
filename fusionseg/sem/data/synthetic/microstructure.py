"""Phase maps of simulated rocks: log-normal grains, rims, intergrowths, inclusions, pores.

Grains are the cells of a power (Laguerre) diagram of random seeds weighted by log-normal
radii squared, evaluated on domain-warped pixel coordinates so boundaries are irregular.
Everything is vectorised over pixels; loops run only over candidate ranks (a few dozen).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from fusionseg.sem.data.synthetic.rocks import RockType
from fusionseg.sem.minerals import class_index


def smooth_noise(shape: tuple[int, int], length_px: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ~``length_px`` (float32, (H, W))."""
    h, w = shape
    step = max(1.0, length_px)
    coarse = rng.standard_normal((int(np.ceil(h / step)) + 3, int(np.ceil(w / step)) + 3)).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, 0.7, mode="wrap")
    coarse /= coarse.std() + 1e-12
    rows = np.arange(h, dtype=np.float32) / step + 1.0
    cols = np.arange(w, dtype=np.float32) / step + 1.0
    # separable linear interpolation: cheaper than ndimage.zoom on a full grid
    r0, c0 = rows.astype(np.int64), cols.astype(np.int64)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bot = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return top * (1 - fr) + bot * fr


def power_diagram(
    shape: tuple[int, int],
    seeds: np.ndarray,
    weights: np.ndarray,
    warp: tuple[np.ndarray, np.ndarray] | None = None,
    tile: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Label every pixel with the seed minimising |x - s|^2 - w (power diagram).

    seeds (G, 2) (row, col) px, weights (G,) px^2, warp optional (drow, dcol) (H, W) px added to
    the pixel coordinates. Returns labels (H, W) int64 and |x - s|^2 to the winning seed (px^2).
    Candidate seeds per tile come from a k-d tree on seeds lifted to 3-D (power distance =
    squared lifted distance minus a constant) and are pruned with exact per-tile bounds, so the
    work is a few candidates per pixel (hand-written: scipy has no raster power diagram).
    """
    h, w = shape
    nty, ntx = -(-h // tile), -(-w // tile)
    oy, ox = np.divmod(np.arange(tile * tile), tile)
    ty, tx = np.divmod(np.arange(nty * ntx), ntx)
    py = (ty[:, None] * tile + oy[None, :]).astype(np.float32)  # (tiles, P) pixel rows
    px = (tx[:, None] * tile + ox[None, :]).astype(np.float32)
    if warp is not None:
        pad = ((0, nty * tile - h), (0, ntx * tile - w))
        py += _to_tiles(np.pad(warp[0], pad, mode="edge"), tile)
        px += _to_tiles(np.pad(warp[1], pad, mode="edge"), tile)
    cy, cx = py.mean(axis=1), px.mean(axis=1)
    rho = np.sqrt(((py - cy[:, None]) ** 2 + (px - cx[:, None]) ** 2).max(axis=1)).astype(np.float64)
    wmax = float(np.max(weights))
    tree = cKDTree(np.c_[seeds, np.sqrt(wmax - weights)])
    k = min(len(seeds), 8)
    while True:
        dist, idx = tree.query(np.c_[cy, cx, np.zeros(len(cy))], k=k)
        dist, idx = dist.reshape(len(cy), -1), idx.reshape(len(cy), -1)
        d2 = np.sqrt(np.maximum(dist**2 - wmax + weights[idx], 0.0))  # planar distance centre -> seed
        upper = ((d2 + rho[:, None]) ** 2 - weights[idx]).min(axis=1)  # best power any pixel surely reaches
        lower = np.maximum(d2 - rho[:, None], 0.0) ** 2 - weights[idx]
        # any seed beyond the k-th has power at the centre >= P_k; bound its best power in the tile
        pk = dist[:, -1] ** 2 - wmax
        unseen = np.maximum(np.sqrt(np.maximum(pk + wmax, 0.0)) - rho, 0.0) ** 2 - wmax
        if k == len(seeds) or np.all(unseen > upper):
            break
        k = min(len(seeds), 2 * k)
    need = lower <= upper[:, None]
    best = np.full(py.shape, np.inf, dtype=np.float32)
    label = np.zeros(py.shape, dtype=np.int64)
    sy, sx, sw = seeds[:, 0].astype(np.float32), seeds[:, 1].astype(np.float32), weights.astype(np.float32)
    for rank in range(idx.shape[1]):  # loop over candidate rank, vectorised over tiles and pixels
        tiles = np.flatnonzero(need[:, rank])
        if tiles.size == 0:
            continue
        cand = idx[tiles, rank]
        pd = (py[tiles] - sy[cand, None]) ** 2 + (px[tiles] - sx[cand, None]) ** 2 - sw[cand, None]
        if rank == 0:
            best[tiles], label[tiles] = pd, cand[:, None]
            continue
        better = pd < best[tiles]
        best[tiles] = np.where(better, pd, best[tiles])
        label[tiles] = np.where(better, cand[:, None], label[tiles])
    labels = _from_tiles(label, nty, ntx, tile)[:h, :w]
    sqd = _from_tiles(best, nty, ntx, tile)[:h, :w] + sw[labels]
    return labels, sqd


def _to_tiles(a: np.ndarray, tile: int) -> np.ndarray:
    nty, ntx = a.shape[0] // tile, a.shape[1] // tile
    return a.reshape(nty, tile, ntx, tile).transpose(0, 2, 1, 3).reshape(nty * ntx, tile * tile)


def _from_tiles(a: np.ndarray, nty: int, ntx: int, tile: int) -> np.ndarray:
    return a.reshape(nty, ntx, tile, tile).transpose(0, 2, 1, 3).reshape(nty * tile, ntx * tile)


def paint_disks(labels: np.ndarray, centres: np.ndarray, radii: np.ndarray, values: np.ndarray) -> None:
    """Set pixels within ``radii`` (px) of ``centres`` (row, col) to ``values``, in place, vectorised."""
    if len(centres) == 0:
        return
    r = int(np.ceil(radii.max()))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    dy, dx = dy.ravel(), dx.ravel()
    cy, cx = np.round(centres[:, 0]).astype(np.int64), np.round(centres[:, 1]).astype(np.int64)
    inside = (dy[None] ** 2 + dx[None] ** 2) <= radii[:, None] ** 2
    rows, cols = (cy[:, None] + dy[None])[inside], (cx[:, None] + dx[None])[inside]
    vals = np.broadcast_to(values[:, None], inside.shape)[inside]
    ok = (rows >= 0) & (rows < labels.shape[0]) & (cols >= 0) & (cols < labels.shape[1])
    labels[rows[ok], cols[ok]] = vals[ok]


def _ids(names: list[str]) -> np.ndarray:
    return np.array([class_index(n) for n in names], dtype=np.int64)


def _choose(table: dict[str, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """n global class ids drawn with the table's probabilities."""
    return _ids(list(table))[rng.choice(len(table), size=n, p=np.array(list(table.values())))]


def _lognormal_radii(median_diam_px: float, sigma: float, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.maximum(0.5 * median_diam_px * np.exp(sigma * rng.standard_normal(n)), 0.6)


def phase_map(rock: RockType, shape: tuple[int, int], pixel_size_um: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W) int64 global class ids of a simulated field of ``rock`` at ``pixel_size_um`` µm/px."""
    h, w = shape
    d_px = rock.grain_diameter_um / pixel_size_um
    grains, sqd, radii = _grains(rock, shape, d_px, rng)
    mineral = _choose(rock.modes, len(radii), rng)
    labels = mineral[grains]
    solid = np.ones(shape, dtype=bool)
    if rock.texture != "interlocking":
        solid = sqd <= (rock.packing * radii[grains]) ** 2
        _fill_matrix(labels, ~solid, rock.matrix, d_px, rng)
    _intergrowths(labels, grains, mineral, solid, rock, pixel_size_um, rng)
    _rims(labels, np.where(solid, grains, -1), mineral, rock, pixel_size_um, rng)
    _inclusions(labels, solid, rock, h * w / max(d_px**2, 1.0), pixel_size_um, rng)
    if rock.pore_fraction > 0:
        rp = _lognormal_radii(rock.pore_diameter_um / pixel_size_um, 0.5, 1, rng)[0]
        n = rng.poisson(rock.pore_fraction * h * w / (np.pi * rp**2 * 1.3))
        radii_p = _lognormal_radii(2 * rp, 0.5, n, rng)
        paint_disks(labels, rng.random((n, 2)) * (h, w), radii_p, np.full(n, class_index("pore")))
    return labels


def _grains(rock: RockType, shape: tuple[int, int], d_px: float, rng: np.random.Generator) -> tuple:
    """Grain id map, squared distance to own seed (px^2) and radii of a power-diagram tessellation."""
    h, w = shape
    margin = d_px
    ext = (h + 2 * margin) * (w + 2 * margin)
    mean_area = np.pi * (d_px / 2) ** 2 * np.exp(2 * rock.grain_sigma**2)
    n = int(np.clip(np.ceil(ext / mean_area * 1.6), 2, 400_000))  # x1.6: weighted cells come out smaller
    radii = _lognormal_radii(d_px, rock.grain_sigma, n, rng)
    seeds = rng.random((n, 2)) * (h + 2 * margin, w + 2 * margin) - margin
    amp = 0.18 * d_px
    warp = (amp * smooth_noise(shape, d_px, rng), amp * smooth_noise(shape, d_px, rng))
    tile = int(np.clip(d_px / 3, 4, 16))
    grains, sqd = power_diagram(shape, seeds, radii**2, warp=warp, tile=tile)
    return grains, sqd, radii


def _fill_matrix(labels: np.ndarray, mask: np.ndarray, matrix: dict[str, float], d_px: float, rng) -> None:
    """Fill ``mask`` with matrix minerals in smooth patches whose areas follow the proportions."""
    ids = _ids(list(matrix))
    if len(ids) == 1:
        labels[mask] = ids[0]
        return
    noise = smooth_noise(labels.shape, max(d_px / 3, 2.0), rng)[mask]
    cuts = np.quantile(noise, np.cumsum(list(matrix.values()))[:-1]) if noise.size else []
    labels[mask] = ids[np.searchsorted(cuts, noise)]


def _intergrowths(labels, grains, mineral, solid, rock: RockType, pixel_size_um: float, rng) -> None:
    """Parallel lamellae (perthite-like) of a second mineral inside some grains of a host."""
    if not rock.intergrowths:
        return
    n = len(mineral)
    other = np.full(n, -1, dtype=np.int64)
    for host, (guest, prob) in rock.intergrowths.items():
        hit = (mineral == class_index(host)) & (rng.random(n) < prob)
        other[hit] = class_index(guest)
    mask = solid & (other[grains] >= 0)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return
    theta, phase = rng.random(n) * np.pi, rng.random(n)
    g = grains.ravel()[idx]
    rr, cc = np.divmod(idx, labels.shape[1])
    spacing = max(rock.lamella_spacing_um / pixel_size_um, 3.0)
    s = (rr * np.cos(theta[g]) + cc * np.sin(theta[g])) / spacing + phase[g]
    lam = (s - np.floor(s)) < 0.3
    labels.ravel()[idx[lam]] = other[g[lam]]


def _rims(labels, objects, mineral, rock: RockType, pixel_size_um: float, rng) -> None:
    """Replace a band along the boundary of some host grains by a rim mineral."""
    if not rock.rims:
        return
    n = len(mineral)
    rim = np.full(n, -1, dtype=np.int64)
    for host, (guest, prob) in rock.rims.items():
        hit = (mineral == class_index(host)) & (rng.random(n) < prob)
        rim[hit] = class_index(guest)
    has = (objects >= 0) & (rim[np.maximum(objects, 0)] >= 0)
    if not has.any():
        return
    edge = np.zeros(objects.shape, dtype=bool)
    edge[1:] |= objects[1:] != objects[:-1]
    edge[:-1] |= objects[1:] != objects[:-1]
    edge[:, 1:] |= objects[:, 1:] != objects[:, :-1]
    edge[:, :-1] |= objects[:, 1:] != objects[:, :-1]
    width = max(1, int(round(rock.rim_width_um / pixel_size_um)))
    yy, xx = np.mgrid[-width : width + 1, -width : width + 1]
    band = ndimage.binary_dilation(edge, structure=yy**2 + xx**2 <= width**2) if width > 1 else edge
    sel = has & band
    labels[sel] = rim[objects[sel]]


def _inclusions(labels, solid, rock: RockType, n_grains: float, pixel_size_um: float, rng) -> None:
    """Small round grains of accessory minerals inside host grains."""
    if not rock.inclusions or rock.inclusions_per_grain <= 0:
        return
    h, w = labels.shape
    n = rng.poisson(rock.inclusions_per_grain * n_grains)
    centres = rng.random((n, 2)) * (h, w)
    inside = solid[np.minimum(centres[:, 0].astype(int), h - 1), np.minimum(centres[:, 1].astype(int), w - 1)]
    centres = centres[inside]
    radii = _lognormal_radii(rock.inclusion_diameter_um / pixel_size_um, 0.4, len(centres), rng)
    paint_disks(labels, centres, radii, _choose(rock.inclusions, len(centres), rng))
