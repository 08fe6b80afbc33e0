"""An exact Gaussian prior: the oracle the diffusion samplers are checked against.

x0 ~ N(mu, Sigma) with Sigma stationary (circulant over each slice's (H, W), given by its power
spectrum P) or diagonal. Under the variance-preserving diffusion x_t = sqrt(a) x0 + sqrt(1 - a) eps
everything stays Gaussian, so Tweedie's denoiser is exact:
    E[x0 | x_t] = mu + sqrt(a) Sigma (a Sigma + (1 - a) I)^-1 (x_t - sqrt(a) mu),
and so is the posterior of a linear Gaussian problem y = A x + n, n ~ N(0, s^2 I).
The stationary model of an example texture u is the ADSN of Galerne, Gousseau and Morel (2011):
P = |DFT(u - mean u)|^2 / N. Pierret and Galerne (2025) use it to compute samplers' exact errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from medrecon import GaussianPrior, InputError, Problem
from medrecon.prior_card import schedule_table

_DIMS = (-2, -1)


def ddpm_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """The linear-beta DDPM noise table (Ho et al. 2020), as a prior card's schedule gives it."""
    return schedule_table({"num_train_timesteps": steps, "schedule": "linear_beta"})


def gaussian_spectrum(shape: tuple[int, int], correlation: float, variance: float) -> torch.Tensor:
    """Power spectrum (orthonormal DFT eigenvalues of Sigma) of a stationary field with Gaussian
    correlation of length `correlation` pixels and pointwise variance `variance`."""
    fy = torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(shape[1], dtype=torch.float64)[None, :]
    p = torch.exp(-2 * (np.pi * correlation) ** 2 * (fx**2 + fy**2))
    return (p / p.mean() * variance).float()


def adsn_spectrum(texture: np.ndarray) -> torch.Tensor:
    """Power spectrum of the ADSN model of an example texture: |DFT(u - mean u)|^2 / N."""
    u = torch.as_tensor(np.asarray(texture, dtype=np.float64))
    t = u - u.mean()
    return (torch.fft.fft2(t).abs() ** 2 / t.numel()).float()


@dataclass
class GaussianPosterior:
    """N(mean, Sigma_post); for stationary problems Sigma_post is diagonal in the 2D DFT basis."""

    mean: torch.Tensor
    spectrum: torch.Tensor | None = None  # DFT-basis variances (stationary case)
    covariance: torch.Tensor | None = None  # dense (n x n) otherwise

    def variance(self) -> torch.Tensor:
        """Pointwise posterior variance (the diagonal of Sigma_post)."""
        if self.spectrum is not None:
            return self.spectrum.mean() * torch.ones_like(self.mean)
        return torch.diagonal(self.covariance).reshape(self.mean.shape).to(self.mean.dtype)

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` exact draws (stationary case): the reference for what sampling error looks like."""
        if self.spectrum is None:
            raise InputError("exact draws are implemented for stationary posteriors")
        w = torch.randn((count, *self.mean.shape), generator=generator)
        return self.mean + torch.fft.ifft2(torch.fft.fft2(w) * self.spectrum.sqrt()).real

    def errors(
        self, samples: torch.Tensor, prior_mean: torch.Tensor | float | None = None
    ) -> dict[str, float]:
        """How far the empirical Gaussian of `samples` (K, H, W) is from this posterior.

        mean_rel_error = ||m_emp - m|| / ||m||; with the prior's mean mu, also the centred error
        ||m_emp - m|| / ||m - mu|| (the prior mean alone, ignoring y, scores 1 there, where the
        uncentred error of a textured prior can look small). w2_rel = W2 / sqrt(tr Sigma_post): W2 in
        units of the posterior's spread. For a stationary posterior the empirical covariance
        is taken in the DFT basis where the exact one is diagonal (its power spectrum, averaged over
        the K samples): cov_rel_error is the relative Frobenius error of the two circulant matrices
        and w2 the 2-Wasserstein distance between the two Gaussians,
        W2^2 = ||m_emp - m||^2 + sum_w (sqrt(p_emp) - sqrt(p))^2.
        """
        if self.spectrum is None:
            raise InputError("sample errors are implemented for stationary posteriors")
        k = samples.shape[0]
        if k < 2:
            raise InputError("at least 2 samples are needed to estimate a covariance")
        m = samples.mean(dim=0)
        n = m.numel()
        p_emp = (torch.fft.fft2(samples - m).abs() ** 2).sum(dim=0) / (n * (k - 1))
        return {**self.gaussian_errors(m, p_emp, prior_mean), "samples": k}

    def gaussian_errors(
        self, mean: torch.Tensor, spectrum: torch.Tensor, prior_mean: torch.Tensor | float | None = None
    ) -> dict[str, float]:
        """The figures of `errors` for a stationary Gaussian N(mean, spectrum in the DFT basis):
        an empirical one (from samples) or a sampler's exact output law (medrecon_priors.oracle_laws).
        Computed in the precision of `mean`."""
        exact, p = self.mean.to(mean.dtype), self.spectrum.to(spectrum.dtype)
        w2 = ((mean - exact).pow(2).sum() + (spectrum.sqrt() - p.sqrt()).pow(2).sum()).sqrt()
        out = {
            "mean_rel_error": float((mean - exact).norm() / exact.norm()),
            "cov_rel_error": float((spectrum - p).norm() / p.norm()),
            "w2": float(w2),
            "w2_rel": float(w2 / p.sum().sqrt()),
        }
        if prior_mean is not None:
            centred = (exact - torch.as_tensor(prior_mean, dtype=exact.dtype)).norm()
            out["mean_rel_error_centred"] = float((mean - exact).norm() / centred.clamp_min(1e-30))
        return out


class Gaussian(GaussianPrior):
    """N(mean, Sigma): `kind="stationary"` (ADSN of `texture`, or Gaussian correlation of length
    `correlation`), or `kind="diagonal"` (independent pixels of variance `variance`)."""

    def __init__(
        self,
        kind: Literal["stationary", "diagonal"] = "stationary",
        mean: float = 0.0,
        variance: float = 0.05,
        correlation: float = 2.0,
        texture: np.ndarray | None = None,
        timesteps: int = 1000,
    ):
        if kind not in ("stationary", "diagonal"):
            raise InputError(f"gaussian: kind must be 'stationary' or 'diagonal', got {kind!r}")
        if variance <= 0 or correlation <= 0:
            raise InputError("gaussian: variance and correlation must be > 0")
        self.kind = kind
        self.mu = float(mean)
        self.var = float(variance)
        self.correlation = float(correlation)
        self.texture = None if texture is None else np.asarray(texture, dtype=np.float32)
        if self.texture is not None:
            self.mu = float(self.texture.mean())
        self._abar = ddpm_alphas_cumprod(timesteps)
        self._spectra: dict[tuple, torch.Tensor] = {}

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._abar

    def spectrum(self, shape: tuple[int, int], device=None) -> torch.Tensor:
        """Eigenvalues of Sigma in the orthonormal 2D DFT basis of an (H, W) slice."""
        key = (tuple(shape), str(device))
        if key not in self._spectra:
            if self.texture is not None:
                if self.texture.shape != tuple(shape):
                    raise InputError(f"the texture is {self.texture.shape}; images must be {tuple(shape)}")
                p = adsn_spectrum(self.texture)
            else:
                p = gaussian_spectrum(tuple(shape), self.correlation, self.var)
            self._spectra[key] = p.to(device)
        return self._spectra[key]

    def predict_x0(self, x_t: torch.Tensor, t) -> torch.Tensor:
        a = self._abar.to(x_t.device)[t]
        centred = x_t - a.sqrt() * self.mu
        if self.kind == "diagonal":
            return self.mu + a.sqrt() * self.var / (a * self.var + 1 - a) * centred
        p = self.spectrum(x_t.shape[-2:], x_t.device)
        gain = a.sqrt() * p / (a * p + 1 - a)
        return self.mu + torch.fft.ifft2(torch.fft.fft2(centred) * gain).real

    def predict_eps(self, x_t: torch.Tensor, t) -> torch.Tensor:
        a = self._abar.to(x_t.device)[t]
        return (x_t - a.sqrt() * self.predict_x0(x_t, t)) / (1 - a).sqrt()

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Draws from the prior (CPU)."""
        w = torch.randn(shape, generator=generator)
        if self.kind == "diagonal":
            return self.mu + self.var**0.5 * w
        return self.mu + torch.fft.ifft2(torch.fft.fft2(w) * self.spectrum(shape[-2:]).sqrt()).real

    def posterior(self, problem: Problem) -> tuple[torch.Tensor, GaussianPosterior]:
        """The exact posterior: in closed form for a periodic blur (stationary), dense otherwise."""
        op, y, s2 = problem.operator, problem.y, problem.noise_std**2
        transfer = periodic_transfer(op) if self.kind == "stationary" else None
        if transfer is not None:
            p = self.spectrum(op.domain_shape[-2:], y.device)
            denom = transfer.abs() ** 2 * p + s2
            mean_hat = (
                p * transfer.conj() * torch.fft.fft2(y) + s2 * self.mu * _dc(p.shape, y.device)
            ) / denom
            post = GaussianPosterior(torch.fft.ifft2(mean_hat).real, spectrum=p * s2 / denom)
            return post.mean, post
        return self._dense_posterior(problem)

    def _dense_posterior(self, problem: Problem) -> tuple[torch.Tensor, GaussianPosterior]:
        op, y, s2 = problem.operator, problem.y, problem.noise_std**2
        shape = op.domain_shape
        n = int(np.prod(shape))
        if n > 4096:
            raise InputError(f"the dense Gaussian posterior needs <= 4096 unknowns, got {n}")
        eye = torch.eye(n, dtype=torch.float64)
        sigma = self._dense_covariance(shape)
        a = torch.stack([op(e.reshape(shape).float()).reshape(-1) for e in eye.float()], dim=1).double()
        ah = a.conj().T
        k = sigma @ ah @ torch.linalg.inv(a @ sigma @ ah + s2 * torch.eye(a.shape[0], dtype=a.dtype))
        mu = torch.full((n,), self.mu, dtype=torch.float64)
        mean = mu + (k @ (y.reshape(-1).to(a.dtype) - a @ mu.to(a.dtype))).real
        cov = (sigma - (k @ a @ sigma).real).real
        return mean.reshape(shape).float(), GaussianPosterior(mean.reshape(shape).float(), covariance=cov)

    def _dense_covariance(self, shape: tuple[int, ...]) -> torch.Tensor:
        n = int(np.prod(shape))
        if self.kind == "diagonal":
            return self.var * torch.eye(n, dtype=torch.float64)
        p = self.spectrum(shape[-2:]).double()
        eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
        return torch.fft.ifft2(torch.fft.fft2(eye) * p).real.reshape(n, n)


def _dc(shape, device) -> torch.Tensor:
    """DFT (orthonormal-free, torch.fft.fft2) of a constant 1 image: N at frequency zero."""
    out = torch.zeros(shape, dtype=torch.complex64, device=device)
    out[0, 0] = shape[0] * shape[1]
    return out


def periodic_transfer(op) -> torch.Tensor | None:
    """The DFT of a periodic 2D blur's kernel on the image grid (its eigenvalues), else None."""
    if getattr(op, "boundary", None) != "periodic" or len(op.domain_shape) != 2 or op.kernel.ndim != 2:
        return None
    k = op.kernel
    grid = torch.zeros(op.domain_shape, dtype=k.dtype, device=k.device)
    grid[: k.shape[0], : k.shape[1]] = k
    return torch.fft.fft2(torch.roll(grid, (-(k.shape[0] // 2), -(k.shape[1] // 2)), dims=(0, 1)))
