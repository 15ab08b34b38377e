"""Benchmark: trilateration accuracy under distance noise, and reconstruction time.

Encodes one cluster of each type (the seven ``ase.cluster`` shapes and a stacking-faulted
close-packed particle), adds Gaussian noise of standard deviation ``sigma`` (a fraction
of the unit radius) to every atom-satellite and atom-atom distance, reconstructs the
coordinates with :func:`diffpy_deepstruc.trilateration.trilaterate` and reports the RMSD
to the true structure after Kabsch alignment.  Prints markdown tables.

Run single-threaded for the timing figures::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 \\
        python benchmarks/bench_trilateration.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _helpers import cluster_xyz  # noqa: E402

from diffpy_deepstruc.representation import encode  # noqa: E402
from diffpy_deepstruc.trilateration import aligned_rmsd, multilaterate, trilaterate  # noqa: E402


def clusters() -> dict[str, np.ndarray]:
    """One cluster per type, 125 to 200 atoms (the test suite's set)."""
    shapes = cluster_xyz()
    shapes["stacking ABCABAB"] = shapes.pop("stacking")
    return shapes


def noisy(rep, sigma: float, rng: np.random.Generator):
    """Targets of ``rep`` with Gaussian noise ``sigma`` (unit-sphere units), clipped at 0."""
    n = rep.n_atoms
    sat = rep.sat_dist[:n] + rng.normal(scale=sigma, size=(n, rep.n_satellites))
    e = np.triu(rng.normal(scale=sigma, size=(n, n)), 1)
    adm = rep.adm[:n, :n] + e + e.T
    return np.clip(sat, 0, None), np.clip(adm, 0, None)


def accuracy_table(structs, sigmas, n_seeds, n_satellites, use_adm) -> list[str]:
    head = "| type | N | scale (A) | " + " | ".join(f"sigma={s:g}" for s in sigmas) + " |"
    lines = [head, "|" + "---|" * (3 + len(sigmas))]
    ratios = {s: [] for s in sigmas}
    for name, xyz in structs.items():
        rep = encode(xyz, n_satellites=n_satellites)
        n = rep.n_atoms
        true = rep.coords[:n]
        cells = []
        for s in sigmas:
            vals = []
            for seed in range(n_seeds):
                sat, adm = noisy(rep, s, np.random.default_rng(seed))
                res = trilaterate(sat, adm if use_adm else None, rep.satellites)
                vals.append(aligned_rmsd(res.xyz, true))
            m = float(np.mean(vals))
            ratios[s].append(m / s if s > 0 else float("nan"))
            cells.append(f"{m:.2e} ({m * rep.scale:.3f} A)")
        lines.append(f"| {name} | {n} | {rep.scale:.2f} | " + " | ".join(cells) + " |")
    lines.append(
        "| RMSD/sigma, max over types | | | "
        + " | ".join(f"{max(ratios[s]):.3f}" if s > 0 else "-" for s in sigmas)
        + " |"
    )
    return lines


def timing_table(xyz, sigmas, repeats, n_satellites) -> list[str]:
    rep = encode(xyz, n_satellites=n_satellites)
    n = rep.n_atoms
    sats = rep.satellites

    def best_of(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), float(np.min(times)), out

    lines = [
        f"| step ({n} atoms, S={rep.n_satellites}) | median (s) | min (s) | L-BFGS-B iterations |",
        "|---|---|---|---|",
    ]
    med, mn, _ = best_of(lambda: encode(xyz, n_satellites=n_satellites))
    lines.append(f"| encode (canonical frame + targets) | {med:.4f} | {mn:.4f} | |")
    med, mn, _ = best_of(lambda: multilaterate(rep.sat_dist[:n], sats))
    lines.append(f"| multilaterate (closed form) | {med:.5f} | {mn:.5f} | |")
    rng = np.random.default_rng(0)
    x0 = rep.coords[:n] + rng.normal(scale=0.05, size=(n, 3))
    med, mn, res = best_of(
        lambda: trilaterate(rep.sat_dist[:n], rep.adm[:n, :n], sats, x0=x0)
    )
    lines.append(
        f"| trilaterate, exact distances, start perturbed by 0.05 | {med:.4f} | {mn:.4f} "
        f"| {res.n_iter} |"
    )
    for s in sigmas:
        sat, adm = noisy(rep, s, np.random.default_rng(1))
        med, mn, res = best_of(lambda sat=sat, adm=adm: trilaterate(sat, adm, sats))
        lines.append(
            f"| trilaterate, sigma={s:g}, satellites + aDM | {med:.4f} | {mn:.4f} "
            f"| {res.n_iter} |"
        )
        med, mn, res = best_of(lambda sat=sat: trilaterate(sat, None, sats))
        lines.append(
            f"| trilaterate, sigma={s:g}, satellites only | {med:.4f} | {mn:.4f} "
            f"| {res.n_iter} |"
        )
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.0, 0.005, 0.01, 0.02, 0.05],
        help="noise standard deviations, fractions of the unit radius",
    )
    p.add_argument("--seeds", type=int, default=3, help="noise realisations per cell")
    p.add_argument("--satellites", type=int, default=11, help="number of satellites S")
    p.add_argument("--repeats", type=int, default=7, help="timing repeats")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-timing", action="store_true")
    args = p.parse_args(argv)

    structs = clusters()
    try:
        import threadpoolctl  # noqa: F401

        guard = "threadpoolctl present (BLAS limited to 1 thread inside trilaterate)"
    except ImportError:
        guard = "threadpoolctl absent"
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.processor() or platform.machine()}, {guard}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n"
    )

    if not args.skip_accuracy:
        for use_adm, title in [(True, "satellites + aDM"), (False, "satellites only")]:
            print(
                f"### RMSD after alignment (unit-sphere units; A), {title}, "
                f"mean of {args.seeds} noise seeds\n"
            )
            print(
                "\n".join(
                    accuracy_table(
                        structs, args.sigmas, args.seeds, args.satellites, use_adm
                    )
                )
            )
            print()
    if not args.skip_timing:
        print("### Time of one reconstruction (200-atom stacking-faulted particle)\n")
        print(
            "\n".join(
                timing_table(
                    structs["stacking ABCABAB"],
                    [s for s in args.sigmas if s > 0],
                    args.repeats,
                    args.satellites,
                )
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
