"""Operator speed and adjoint accuracy against established peers, measured in the same run.

    python benchmarks/operators.py [--json PATH] [--repeats N] [--device cpu|cuda] [--quick]

Prints a table; with --json writes a JSON list of rows with the keys operator, size, forward_ms,
adjoint_ms, peer, peer_ms, ratio (our forward+adjoint time / the peer's), adjoint_rel_error, and
setup_ms (building our operator: masks, maps, the CT matrix). Times are medians over repeats after
one warm-up; the whole volume is processed per call (peers that work per slice loop over slices).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from medrecon.numerics import adjoint_test


def median_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def ours(op, x: torch.Tensor, repeats: int, sync) -> tuple[float, float, float]:
    with torch.no_grad():
        y = op(x)
        fwd = median_ms(lambda: op(x), repeats, sync)
        adj = median_ms(lambda: op.adjoint(y), repeats, sync)
    return fwd, adj, adjoint_test(op).relative_error


def row(name, size, fwd, adj, err, setup, peer, peer_ms) -> dict:
    return {
        "operator": name,
        "size": size,
        "forward_ms": round(fwd, 2),
        "adjoint_ms": round(adj, 2),
        "peer": peer,
        "peer_ms": round(peer_ms, 2),
        "ratio": round((fwd + adj) / peer_ms, 4),
        "adjoint_rel_error": float(f"{err:.3g}"),
        "setup_ms": round(setup, 1),
    }


def bench_mri(device, repeats, quick) -> list[dict]:
    import sigpy.mri.linop as sl

    from medrecon_mri import MultiCoilMRI

    d, n, c = (4, 128, 8) if quick else (16, 256, 8)
    start = time.perf_counter()
    op = MultiCoilMRI((d, n, n), coils=c, acceleration=4).to(device)
    setup = (time.perf_counter() - start) * 1e3
    x = torch.rand(d, n, n, device=device)
    fwd, adj, err = ours(op, x, repeats, _sync(device))
    maps, mask = op.coil_maps.cpu().numpy(), op.mask.cpu().numpy()
    senses = [sl.Sense(maps[i], weights=mask) for i in range(d)]
    xs = x.cpu().numpy().astype(np.complex64)
    ys = [s * xs[i] for i, s in enumerate(senses)]
    peer = median_ms(lambda: [s * xs[i] for i, s in enumerate(senses)], repeats) + median_ms(
        lambda: [s.H * ys[i] for i, s in enumerate(senses)], repeats
    )
    size = f"{c} coils x {d} x {n} x {n}"
    return [row("mri-multicoil", size, fwd, adj, err, setup, "sigpy Sense", peer)]


def bench_ct(device, repeats, quick) -> list[dict]:
    from medrecon_ct import ParallelBeamCT

    d, n = (4, 128) if quick else (16, 256)
    rows = []
    for views in (180, 8):
        start = time.perf_counter()
        op = ParallelBeamCT((d, n, n), views=views).to(device)
        setup = (time.perf_counter() - start) * 1e3
        x = torch.rand(d, n, n, device=device)
        fwd, adj, err = ours(op, x, repeats, _sync(device))
        size = f"{d} x {n} x {n}, {views} views"
        xs = x.cpu().numpy()
        peer = _skimage(xs, op.angles_deg, max(1, repeats // 2))
        rows.append(row("ct-parallel", size, fwd, adj, err, setup, "skimage radon/iradon", peer))
        astra_ms = _astra(xs, np.radians(op.angles_deg), op.detectors, repeats)
        if astra_ms is not None:
            rows.append(row("ct-parallel", size, fwd, adj, err, setup, "astra cpu (linear)", astra_ms))
    return rows


def _skimage(xs: np.ndarray, angles: np.ndarray, repeats: int) -> float:
    """radon, and iradon without filter (the back-projection), slice by slice."""
    from skimage.transform import iradon, radon

    n = xs.shape[-1]
    sinos = [radon(s, angles, circle=False) for s in xs]
    forward = median_ms(lambda: [radon(s, angles, circle=False) for s in xs], repeats)
    back = median_ms(
        lambda: [iradon(s, angles, circle=False, filter_name=None, output_size=n) for s in sinos], repeats
    )
    return forward + back


def _astra(xs: np.ndarray, angles: np.ndarray, detectors: int, repeats: int) -> float | None:
    try:
        import astra
    except Exception:  # optional peer: pip install ".[bench]"
        return None
    n = xs.shape[-1]
    vol = astra.create_vol_geom(n, n)
    proj = astra.create_proj_geom("parallel", 1.0, detectors, angles)
    pid = astra.create_projector("linear", proj, vol)

    def forward():
        for s in xs:
            sid, _ = astra.create_sino(s, pid)
            astra.data2d.delete(sid)

    sinos = []
    for s in xs:
        sid, sino = astra.create_sino(s, pid)
        astra.data2d.delete(sid)
        sinos.append(sino)

    def backward():
        for sino in sinos:
            bid, _ = astra.create_backprojection(sino, pid)
            astra.data2d.delete(bid)

    total = median_ms(forward, repeats) + median_ms(backward, repeats)
    astra.projector.delete(pid)
    return total


def bench_deconv(device, repeats, quick) -> list[dict]:
    from scipy.signal import fftconvolve

    from medrecon_deconv import Convolution

    n, k = (32, 9) if quick else (64, 9)
    start = time.perf_counter()
    op = Convolution((n, n, n), kernel_size=k, kernel_dims=3).to(device)
    setup = (time.perf_counter() - start) * 1e3
    x = torch.rand(n, n, n, device=device)
    fwd, adj, err = ours(op, x, repeats, _sync(device))
    kernel = op.kernel.cpu().numpy()
    xs = x.cpu().numpy()
    flipped = kernel[::-1, ::-1, ::-1]
    peer = median_ms(lambda: fftconvolve(xs, kernel, mode="same"), repeats)
    peer += median_ms(lambda: fftconvolve(xs, flipped, mode="same"), repeats)
    size = f"{n}^3 volume, {k}^3 kernel"
    return [row("blind-deconv", size, fwd, adj, err, setup, "scipy fftconvolve", peer)]


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def print_table(rows: list[dict]) -> None:
    cols = [
        "operator",
        "size",
        "forward_ms",
        "adjoint_ms",
        "peer",
        "peer_ms",
        "ratio",
        "adjoint_rel_error",
        "setup_ms",
    ]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write the rows as a JSON list to this path")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    rows = []
    for bench in (bench_mri, bench_ct, bench_deconv):
        rows += bench(args.device, args.repeats, args.quick)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print_table(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
