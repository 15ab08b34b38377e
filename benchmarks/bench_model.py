"""Speed of the networks and of the generator on this machine.

Usage::

    python benchmarks/bench_model.py [--model DIR|pretrained] [--threads 1] [--batch 32]

Reports: parameter count; one training step (forward, Hungarian-matched loss, backward,
AdamW) on random targets of the default size; prior sampling + decoding of 20 latent
points; and, with a model, the full ``generate(n=20)`` on a synthetic PDF (trilateration
and scale fit included).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from diffpy_deepstruc.models import ModelConfig, build_model, count_parameters
from diffpy_deepstruc.representation import satellite_positions
from diffpy_deepstruc.training import batch_targets, compute_losses


def _timeit(fn, repeat: int = 5) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint folder or 'pretrained'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = ModelConfig()
    model = build_model(cfg)
    print(f"default CVAE: {count_parameters(model):,} parameters, threads {args.threads}")
    B = args.batch
    rng = np.random.default_rng(0)
    n = torch.from_numpy(rng.integers(5, cfg.n_max + 1, B))
    coords = torch.zeros(B, cfg.n_max, 3)
    for b in range(B):
        x = rng.normal(size=(int(n[b]), 3))
        coords[b, : int(n[b])] = torch.from_numpy(x / np.abs(x).max()).float()
    sats = torch.tensor(satellite_positions(cfg.n_satellites), dtype=torch.float32)
    sat, adm, mask = batch_targets(coords, n, sats)
    pdf = torch.randn(B, cfg.n_points)
    ls = torch.zeros(B)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    w = {"sat": 1, "adm": 1, "sort": 0.5, "mask": 1, "scale": 1}

    def step():
        out = model(pdf, sat, mask)
        outp = model.decode(out["mu_p"], out["c"])
        t = compute_losses(
            model,
            out,
            sat,
            adm,
            mask,
            ls,
            1e-3,
            w,
            adm_rows=32,
            out_prior=outp,
            prior_weight=1.0,
            match=True,
        )
        opt.zero_grad()
        t["loss"].backward()
        opt.step()

    print(f"training step, batch {B}: {_timeit(step) * 1e3:.0f} ms")
    model.eval()

    def sample():
        with torch.no_grad():
            c = model.condition(pdf[:1])
            z = model.sample_prior(c, 20)[0]
            model.decode(z, c.expand(20, -1))

    print(f"prior sampling + decoding of 20 points: {_timeit(sample) * 1e3:.1f} ms")

    if args.model:
        from diffpy_deepstruc.generator import DeepStruc

        ds = (
            DeepStruc.pretrained()
            if args.model == "pretrained"
            else DeepStruc.load(args.model)
        )
        r = np.arange(0, 30.0, 0.01)
        g = np.sin(2 * np.pi * r / 2.77) * np.exp(-r / 8) + 2 * np.exp(
            -(((r - 2.77) / 0.1) ** 2)
        )
        t = time.perf_counter()
        c = ds.generate((r, g), n=20, element="Pt", seed=0)
        dt = time.perf_counter() - t
        print(
            f"generate(n=20) with {args.model}: {dt:.2f} s "
            f"(atom counts {sorted({x.n_atoms for x in c})[:6]}...)"
        )


if __name__ == "__main__":
    main()
