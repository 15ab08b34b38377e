"""Networks: the conditional VAE (CVAE) and its deterministic twin (DAE).

Plain :class:`torch.nn.Module` s, no I/O.  Shapes use ``B`` batch, ``L`` PDF points,
``N`` = ``n_max`` atom slots, ``S`` satellites, ``D`` latent dimensions.

Parts (see ``docs/model.md`` for the reasoning):

* :class:`PDFEncoder` -- gated 1-D convolutions over the preprocessed PDF ``[B, L]`` ->
  condition vector ``c [B, C]``.  Shared by the prior, the posterior and the decoder.
* prior p(z | PDF) -- an MLP on ``c`` -> mean and log-variance ``[B, D]``.
* posterior q(z | structure, PDF) -- a permutation-invariant set encoder over the atoms'
  satellite distances (masked mean + max pooling), joined with ``c``.
* :class:`SlotDecoder` -- p(distances | z, PDF): a learned embedding per atom slot
  (canonical order) plus a projection of ``[z, c]``, through a shared per-slot MLP, gives
  per-atom features; heads read the atom-mask logit ``[B, N]``, the atom-satellite
  distances ``[B, N, S]`` and a small per-atom embedding ``[B, N, K]`` whose pairwise
  Euclidean distances are the atom-distance matrix (aDM) ``[B, N, N]`` (symmetric, zero
  diagonal, never a dense N x N head).
* a scale head on ``c`` alone: log of the Angstrom-per-unit factor (the unit-sphere shape
  does not depend on the metal; the size in Angstrom is read from the PDF).

:class:`CVAE` samples ``z`` from the posterior during training and from the prior at
inference; :class:`DAE` uses the posterior mean and is trained with an L2 penalty that
pulls the prior mean onto it (no KL).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ParameterError

__all__ = [
    "JSONConfig",
    "ModelConfig",
    "PDFEncoder",
    "GatedConv1d",
    "SlotDecoder",
    "DeepStrucNet",
    "CVAE",
    "DAE",
    "build_model",
    "pairwise_distances",
    "count_parameters",
]


class JSONConfig:
    """``to_dict`` / ``from_dict`` of the frozen architecture dataclasses (tuples are
    written as JSON lists; ``__post_init__`` turns them back)."""

    _what = "model config"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown keys raise ParameterError."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise ParameterError(f"unknown {cls._what} keys {sorted(extra)}")
        return cls(**d)


@dataclass(frozen=True)
class ModelConfig(JSONConfig):
    """Architecture hyper-parameters (stored in checkpoints).

    Attributes
    ----------
    kind : {"cvae", "dae"}
    n_points : int
        Length L of the preprocessed PDF.
    n_max : int
        Atom slots N.
    n_satellites : int
        Satellites S.
    latent : int
        Latent dimensions D.
    conv_channels : tuple of int
        Output channels of the gated convolutions (each halves the length).
    kernel : int
        Convolution kernel size (odd).
    cond_dim : int
        Size C of the PDF condition vector.
    hidden : int
        Width of the MLPs.
    atom_dim : int
        Width of the per-slot decoder features.
    decoder_layers : int
        Residual per-slot blocks in the decoder.
    adm_dim : int
        Size K of the per-atom embedding whose distances give the aDM.
    decoder : {"dense", "slot"}
        ``"dense"``: an MLP on ``[z, c]`` whose last linear layer writes every slot's
        outputs (fast to train); ``"slot"``: a shared per-slot MLP on learned slot
        embeddings (fewer parameters, slower to train).
    dense_hidden : int
        Width of the dense decoder's MLP.
    decoder_pdf : bool
        The decoder reads ``[z, c]`` (True, the v1/v2 models) or ``z`` alone (False):
        then everything about the structure must pass through the latent, which is what
        makes the 2-D map meaningful (see ``docs/model.md``).
    posterior_pdf : bool
        The posterior reads the PDF condition beside the structure (True) or the
        structure alone (False).
    fourier : int
        Random Fourier features of ``z`` fed to the dense decoder beside ``z`` (0: none):
        ``sin / cos(2 pi B z)``, ``B ~ N(0, fourier_sigma^2)``, ``[D, fourier]``, a
        buffer stored in the checkpoint.  Lets an MLP on a 2-D input resolve detail at
        the scale of the spacing between training shapes.
    fourier_sigma : float
        Spread of the Fourier frequencies (per latent unit).
    dense_layers : int
        Hidden layers of the dense decoder.
    prior : {"gaussian", "mixture"}
        Form of p(z | PDF): one Gaussian whose mean and log-variance an MLP reads from
        the condition, or a mixture of ``n_components`` Gaussians with fixed means and
        variances (buffers ``comp_mean`` / ``comp_logvar``, the training shapes'
        posteriors) whose weights an MLP reads from the condition.
    n_components : int
        Mixture components (``prior="mixture"``).
    """

    kind: str = "cvae"
    n_points: int = 281
    n_max: int = 200
    n_satellites: int = 11
    latent: int = 2
    conv_channels: tuple[int, ...] = (16, 32, 48, 64)
    kernel: int = 5
    cond_dim: int = 128
    hidden: int = 160
    atom_dim: int = 64
    decoder_layers: int = 2
    adm_dim: int = 6
    decoder: str = "dense"
    dense_hidden: int = 512
    decoder_pdf: bool = True
    posterior_pdf: bool = True
    fourier: int = 0
    fourier_sigma: float = 8.0
    dense_layers: int = 2
    prior: str = "gaussian"
    n_components: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.decoder not in ("dense", "slot"):
            raise ParameterError(f"decoder must be 'dense' or 'slot', not {self.decoder!r}")
        if self.kind not in ("cvae", "dae"):
            raise ParameterError(f"model kind must be 'cvae' or 'dae', not {self.kind!r}")
        for name in (
            "n_points",
            "n_max",
            "n_satellites",
            "latent",
            "cond_dim",
            "hidden",
            "atom_dim",
            "decoder_layers",
            "adm_dim",
            "dense_layers",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ParameterError(
                    f"model config {name} must be a positive integer, not {v!r}"
                )
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ParameterError(
                f"kernel must be a positive odd integer, not {self.kernel}"
            )
        if self.prior not in ("gaussian", "mixture"):
            raise ParameterError(
                f"prior must be 'gaussian' or 'mixture', not {self.prior!r}"
            )
        if self.prior == "mixture" and (
            not isinstance(self.n_components, int) or self.n_components < 1
        ):
            raise ParameterError(
                f"a mixture prior needs n_components >= 1, not {self.n_components!r}"
            )
        if not isinstance(self.fourier, int) or self.fourier < 0:
            raise ParameterError(f"fourier must be an integer >= 0, not {self.fourier!r}")
        if not self.fourier_sigma > 0:
            raise ParameterError(
                f"fourier_sigma must be positive, not {self.fourier_sigma}"
            )
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pairwise_distances(emb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Euclidean distance matrix of per-atom embeddings.

    Parameters
    ----------
    emb : Tensor ``[B, N, K]``

    Returns
    -------
    Tensor ``[B, N, N]``, symmetric, exactly zero on the diagonal.
    """
    sq = (emb * emb).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * emb @ emb.transpose(1, 2)
    n = emb.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    d2 = d2.clamp_min(0.0).masked_fill(eye, 0.0)
    return (torch.sqrt(d2 + eps) - eps**0.5).clamp_min(0.0)


class GatedConv1d(nn.Module):
    """Gated 1-D convolution: ``a * sigmoid(b)`` (GLU), stride 2, then a per-sample
    GroupNorm (one group) so the signal does not fade through the stack.

    Input ``[B, C_in, L]`` -> output ``[B, C_out, ceil(L / 2)]``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 5, stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, 2 * c_out, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.GroupNorm(1, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.glu(self.conv(x), dim=1))


def _conv_len(n: int, kernel: int, stride: int = 2) -> int:
    return (n + 2 * (kernel // 2) - kernel) // stride + 1


class PDFEncoder(nn.Module):
    """Gated 1-D convolutions over the PDF.

    Input ``pdf [B, L]`` -> condition ``c [B, C]``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers = []
        c_in, n = 1, cfg.n_points
        for c in cfg.conv_channels:
            layers.append(GatedConv1d(c_in, c, cfg.kernel))
            c_in, n = c, _conv_len(n, cfg.kernel)
        self.convs = nn.Sequential(*layers)
        # the raw PDF joins the convolution features (a short path for coarse trends)
        self.flat = c_in * n + cfg.n_points
        self.head = nn.Sequential(
            nn.Linear(self.flat, cfg.hidden),
            nn.SiLU(),
            nn.Linear(cfg.hidden, cfg.cond_dim),
        )

    def forward(self, pdf: torch.Tensor) -> torch.Tensor:
        h = self.convs(pdf.unsqueeze(1))
        return self.head(torch.cat([h.flatten(1), pdf], dim=1))


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.SiLU(),
        nn.Linear(hidden, hidden),
        nn.SiLU(),
        nn.Linear(hidden, d_out),
    )


class SetEncoder(nn.Module):
    """Permutation-invariant structure encoder for q(z | structure, PDF).

    Inputs ``sat_dist [B, N, S]``, ``mask [B, N]`` (bool), ``c [B, C]`` -> mean and
    log-variance ``[B, D]``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h = cfg.atom_dim
        self.atom = nn.Sequential(
            nn.Linear(cfg.n_satellites, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU()
        )
        self.n_max = cfg.n_max
        self.use_c = cfg.posterior_pdf
        c_dim = cfg.cond_dim if self.use_c else 0
        self.out = _mlp(2 * h + 1 + c_dim, cfg.hidden, 2 * cfg.latent)

    def forward(self, sat_dist: torch.Tensor, mask: torch.Tensor, c: torch.Tensor):
        m = mask.to(sat_dist.dtype).unsqueeze(-1)
        h = self.atom(sat_dist)
        n = m.sum(1).clamp_min(1.0)
        mean = (h * m).sum(1) / n
        mx = torch.where(m > 0, h, torch.full_like(h, -1e4)).amax(1)
        frac = n / self.n_max
        parts = [mean, mx, frac, c] if self.use_c else [mean, mx, frac]
        mu, logvar = self.out(torch.cat(parts, dim=-1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)


class SlotDecoder(nn.Module):
    """p(distances | z, PDF): per-slot features from a learned slot embedding + [z, c].

    Inputs ``z [B, D]``, ``c [B, C]`` -> dict with ``mask_logit [B, N]``,
    ``sat_dist [B, N, S]`` (unit-sphere units, >= 0) and ``emb [B, N, K]`` (aDM embedding;
    use :func:`pairwise_distances`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.atom_dim
        self.slots = nn.Parameter(torch.randn(cfg.n_max, d) * 0.5)
        self.code = nn.Sequential(
            nn.Linear(cfg.latent + cfg.cond_dim, cfg.hidden),
            nn.SiLU(),
            nn.Linear(cfg.hidden, 2 * d),
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d)
            )
            for _ in range(cfg.decoder_layers)
        )
        self.film = nn.ModuleList(
            nn.Linear(2 * d, 2 * d) for _ in range(cfg.decoder_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.mask_head = nn.Linear(d, 1)
        self.sat_head = nn.Linear(d, cfg.n_satellites)
        self.emb_head = nn.Linear(d, cfg.adm_dim)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        g = self.code(torch.cat([z, c], dim=-1))  # [B, 2d]
        add, _ = g.chunk(2, dim=-1)
        h = self.slots.unsqueeze(0) + add.unsqueeze(1)  # [B, N, d]
        for block, film in zip(self.blocks, self.film, strict=True):
            gamma, beta = film(g).unsqueeze(1).chunk(2, dim=-1)
            h = h + block(h) * (1 + gamma) + beta
        h = self.norm(h)
        return {
            "mask_logit": self.mask_head(h).squeeze(-1),
            "sat_dist": F.softplus(self.sat_head(h)),
            "emb": self.emb_head(h),
        }


class DenseDecoder(nn.Module):
    """p(distances | z[, PDF]) as one MLP: ``[z, c]`` (or ``z`` and its Fourier features
    when ``decoder_pdf`` is False) -> hidden -> every slot's outputs.

    Inputs ``z [B, D]``, ``c [B, C]`` -> same dict as :class:`SlotDecoder`.  The last layer
    is ``hidden x N (1 + S + K)``: each slot reads its own linear function of the code,
    while the aDM still comes from K-dimensional per-atom embeddings (no N x N head).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h = cfg.dense_hidden
        self.n, self.s, self.k = cfg.n_max, cfg.n_satellites, cfg.adm_dim
        self.use_c = cfg.decoder_pdf
        self.register_buffer(
            "fourier_b", torch.randn(cfg.latent, cfg.fourier) * cfg.fourier_sigma
        )
        d_in = cfg.latent + 2 * cfg.fourier + (cfg.cond_dim if self.use_c else 0)
        layers: list[nn.Module] = []
        for i in range(cfg.dense_layers):
            layers += [nn.Linear(d_in if i == 0 else h, h), nn.SiLU()]
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(h, self.n * (1 + self.s + self.k))

    def features(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Decoder input ``[B, D (+ 2F) (+ C)]``."""
        parts = [z]
        if self.fourier_b.shape[1]:
            p = (2 * math.pi) * (z @ self.fourier_b)
            parts += [torch.sin(p), torch.cos(p)]
        if self.use_c:
            parts.append(c)
        return torch.cat(parts, dim=-1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.out(self.mlp(self.features(z, c))).view(-1, self.n, 1 + self.s + self.k)
        return {
            "mask_logit": o[..., 0],
            "sat_dist": F.softplus(o[..., 1 : 1 + self.s] + 1.0),
            "emb": o[..., 1 + self.s :],
        }


class DeepStrucNet(nn.Module):
    """Common body of :class:`CVAE` and :class:`DAE`.

    Buffers ``log_scale_mean`` / ``log_scale_std`` standardise the scale target (set by
    training from the training split); ``latent_noise`` is the sampling spread of the DAE
    (RMS encoder-prior mismatch on the training split; unused by the CVAE).
    """

    kind = "base"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.pdf_encoder = PDFEncoder(config)
        self.mixture = config.prior == "mixture"
        n_out = config.n_components if self.mixture else 2 * config.latent
        self.prior_net = _mlp(config.cond_dim, config.hidden, n_out)
        if self.mixture:
            k = config.n_components
            self.register_buffer("comp_mean", torch.zeros(k, config.latent))
            self.register_buffer("comp_logvar", torch.zeros(k, config.latent))
        self.posterior_net = SetEncoder(config)
        self.decoder = (
            DenseDecoder(config) if config.decoder == "dense" else SlotDecoder(config)
        )
        self.scale_head = _mlp(config.cond_dim, config.hidden, 1)
        self.register_buffer("log_scale_mean", torch.zeros(()))
        self.register_buffer("log_scale_std", torch.ones(()))
        self.register_buffer("latent_noise", torch.zeros(()))

    # -- pieces -----------------------------------------------------------------
    def condition(self, pdf: torch.Tensor) -> torch.Tensor:
        """``pdf [B, L]`` -> ``c [B, C]``."""
        return self.pdf_encoder(pdf)

    def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z | PDF): ``c [B, C]`` -> mean, log-variance ``[B, D]``.

        For a mixture prior: the mean and log-variance of its most probable component
        (the mode of p(z | PDF) when the components are well separated).
        """
        if self.mixture:
            k = self.prior_net(c).argmax(-1)
            return self.comp_mean[k], self.comp_logvar[k]
        mu, logvar = self.prior_net(c).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)

    def prior_logits(self, c: torch.Tensor) -> torch.Tensor:
        """Mixture prior: component log-weights (unnormalised) ``[B, K]``."""
        if not self.mixture:
            raise ParameterError("prior_logits needs a mixture prior")
        return self.prior_net(c)

    def posterior(self, sat_dist, mask, c):
        """q(z | structure, PDF) -> mean, log-variance ``[B, D]``."""
        return self.posterior_net(sat_dist, mask, c)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """``z [B, D]``, ``c [B, C]`` -> decoder outputs plus ``log_scale [B]``
        (standardised) and ``scale [B]`` (A per unit)."""
        out = self.decoder(z, c)
        ls = self.scale_head(c).squeeze(-1)
        out["log_scale"] = ls
        out["scale"] = torch.exp(ls * self.log_scale_std + self.log_scale_mean)
        return out

    def forward(
        self,
        pdf: torch.Tensor,
        sat_dist: torch.Tensor,
        mask: torch.Tensor,
        sample: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Training pass.

        Parameters
        ----------
        pdf : ``[B, L]``; sat_dist : ``[B, N, S]`` target; mask : ``[B, N]`` bool target.
        sample : bool
            Draw z from the posterior (CVAE) instead of using its mean.

        Returns
        -------
        dict
            decoder outputs (see :meth:`decode`) plus ``z``, ``mu_q``, ``logvar_q``,
            ``mu_p``, ``logvar_p`` (all ``[B, D]``) and the condition ``c [B, C]``.
        """
        c = self.condition(pdf)
        mu_q, logvar_q = self.posterior(sat_dist, mask, c)
        mu_p, logvar_p = self.prior(c)
        z = self._latent(mu_q, logvar_q, sample)
        out = self.decode(z, c)
        out.update(z=z, mu_q=mu_q, logvar_q=logvar_q, mu_p=mu_p, logvar_p=logvar_p, c=c)
        return out

    def _latent(self, mu, logvar, sample):  # pragma: no cover - overridden
        raise NotImplementedError

    def sample_prior(
        self,
        c: torch.Tensor,
        n: int,
        generator: torch.Generator | None = None,
        include_mean: bool = True,
        distinct: bool = True,
    ) -> torch.Tensor:
        """``n`` latent points per condition: ``c [B, C]`` -> ``z [B, n, D]``.

        The first point is the prior mean when ``include_mean``.  A mixture prior draws
        ``n`` distinct components without replacement when ``distinct`` (Gumbel top-k on
        the weights: diverse candidates), else ``n`` components with replacement in
        proportion to their weights (ancestral sampling of p(z | PDF)); the first is the
        most probable when ``include_mean``; one point from each drawn component.
        """
        if self.mixture:
            return self._sample_mixture(c, n, generator, include_mean, distinct)
        mu, logvar = self.prior(c)
        std = self.prior_std(logvar)
        eps = torch.randn(
            (c.shape[0], n, mu.shape[-1]), generator=generator, dtype=mu.dtype, device="cpu"
        ).to(mu.device)
        if include_mean:
            eps[:, 0] = 0.0
        return mu.unsqueeze(1) + std.unsqueeze(1) * eps

    def prior_std(self, logvar: torch.Tensor) -> torch.Tensor:
        """Sampling spread of the prior ``[B, D]``."""
        return torch.exp(0.5 * logvar)

    def _sample_mixture(self, c, n, generator, include_mean, distinct=True):
        logp = torch.log_softmax(self.prior_logits(c), dim=-1)  # [B, K]
        B, K = logp.shape
        if distinct:
            u = torch.rand((B, K), generator=generator, dtype=logp.dtype, device="cpu")
            gumbel = -torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-12))).to(logp.device)
            keys = logp + gumbel
            if include_mean:
                keys[torch.arange(B), logp.argmax(-1)] = float("inf")
            m = min(n, K)
            comp = keys.topk(m, dim=-1).indices  # [B, m]
            if m < n:  # more samples than components: repeat the order
                comp = comp.repeat(1, -(-n // m))[:, :n]
        else:
            w = logp.exp().to("cpu", torch.float64)
            comp = torch.multinomial(w, n, replacement=True, generator=generator)
            comp = comp.to(logp.device)
            if include_mean:
                comp[:, 0] = logp.argmax(-1)
        mu = self.comp_mean[comp]
        std = self.prior_std(self.comp_logvar[comp])
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device="cpu")
        eps = eps.to(mu.device)
        if include_mean:
            eps[:, 0] = 0.0
        return mu + std * eps


class CVAE(DeepStrucNet):
    """Conditional VAE: z ~ q(z | structure, PDF) in training, z ~ p(z | PDF) at inference.

    Loss (see :mod:`diffpy_deepstruc.training`): reconstruction + beta * KL(q || p).
    """

    kind = "cvae"

    def _latent(self, mu, logvar, sample):
        if not sample:
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class DAE(DeepStrucNet):
    """Deterministic twin: z = posterior mean; loss reconstruction + lambda * |mu_q - mu_p|^2.

    At inference z is the prior mean, spread by the buffer ``latent_noise``.
    """

    kind = "dae"

    def _latent(self, mu, logvar, sample):
        return mu

    def prior_std(self, logvar: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(logvar) * self.latent_noise


def build_model(config: ModelConfig | dict) -> DeepStrucNet:
    """Instantiate :class:`CVAE` or :class:`DAE` from a config (or its dict)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return {"cvae": CVAE, "dae": DAE}[config.kind](config)
