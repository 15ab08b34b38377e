"""Networks of the shape-code generator (plain ``nn.Module``s, no I/O).

PDF ``[B, L]`` -> condition ``c [B, C]`` (the gated-convolution encoder of the
distance models) -> prior p(z | PDF) = N(mu, sigma) ``[B, D]``; the decoder reads ``z``
alone and writes family logits ``[B, F]`` and every family's normalised code
``[B, F, T]`` (T = the longest family's slot count).  The CVAE's posterior
q(z | PDF, code) reads the condition and the true code (one-hot family + normalised
numbers); the DAE uses the prior mean as its latent point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ParameterError
from ..models import JSONConfig, ModelConfig, PDFEncoder, _mlp

__all__ = ["CodeNet", "CodeNetConfig"]


@dataclass(frozen=True)
class CodeNetConfig(JSONConfig):
    """Architecture of a :class:`CodeNet` (stored in its checkpoint).

    Attributes
    ----------
    kind : {"cvae", "dae"}
    families : list of str
        The shape-code families it decodes (:mod:`diffpy_deepstruc.shapegen.codes`).
    n_slots : int
        T, the longest family's slot count.
    n_points : int
        Length L of the preprocessed PDF.
    latent : int
        D.
    conv_channels, kernel, cond_dim, hidden :
        The PDF encoder (as :class:`diffpy_deepstruc.models.ModelConfig`).
    decoder_hidden : int
        Width of the decoder MLP.
    """

    kind: str = "cvae"
    families: list = field(default_factory=list)
    n_slots: int = 1
    n_points: int = 281
    latent: int = 8
    conv_channels: tuple[int, ...] = (16, 32, 48, 64)
    kernel: int = 5
    cond_dim: int = 128
    hidden: int = 256
    decoder_hidden: int = 512

    _what = "shape-code model config"

    def __post_init__(self) -> None:
        if self.kind not in ("cvae", "dae"):
            raise ParameterError(f"model kind must be 'cvae' or 'dae', not {self.kind!r}")
        if not self.families:
            raise ParameterError("a shape-code model needs at least one family")
        for name in (
            "n_slots",
            "n_points",
            "latent",
            "cond_dim",
            "hidden",
            "decoder_hidden",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ParameterError(
                    f"model config {name} must be a positive integer, not {v!r}"
                )
        object.__setattr__(self, "families", [str(f) for f in self.families])
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))

    def encoder_config(self) -> ModelConfig:
        """The :class:`ModelConfig` of the PDF encoder."""
        return ModelConfig(
            n_points=self.n_points,
            conv_channels=self.conv_channels,
            kernel=self.kernel,
            cond_dim=self.cond_dim,
            hidden=self.hidden,
        )


class CodeNet(nn.Module):
    """PDF-conditioned latent model that decodes shape codes."""

    def __init__(self, config: CodeNetConfig) -> None:
        super().__init__()
        self.config = config
        self.kind = config.kind
        F, T, D = len(config.families), config.n_slots, config.latent
        self.encoder = PDFEncoder(config.encoder_config())
        self.prior_net = _mlp(config.cond_dim, config.hidden, 2 * D)
        if config.kind == "cvae":
            self.posterior_net = _mlp(config.cond_dim + F + T, config.hidden, 2 * D)
        self.decoder = _mlp(D, config.decoder_hidden, F + F * T)
        # sampling spread of the DAE (per latent unit), set after training
        self.register_buffer("latent_noise", torch.zeros(D))

    def condition(self, pdf: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` -> ``[B, C]``."""
        return self.encoder(pdf)

    def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance ``[B, D]`` of p(z | PDF)."""
        mu, logvar = self.prior_net(c).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)

    def posterior(self, c: torch.Tensor, code: torch.Tensor):
        """Mean and log-variance ``[B, D]`` of q(z | PDF, code) (CVAE only)."""
        mu, logvar = self.posterior_net(torch.cat([c, code], dim=-1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, D]`` -> family logits ``[B, F]`` and codes ``[B, F, T]``."""
        F, T = len(self.config.families), self.config.n_slots
        out = self.decoder(z)
        return out[:, :F], out[:, F:].reshape(-1, F, T)

    def prior_std(self, logvar: torch.Tensor) -> torch.Tensor:
        """Spread of the latent samples around the prior mean ``[B, D]`` (the DAE's:
        its latent noise), as :meth:`diffpy_deepstruc.models.CVAE.prior_std`."""
        if self.kind == "dae":
            return self.latent_noise.expand_as(logvar)
        return torch.exp(0.5 * logvar)
