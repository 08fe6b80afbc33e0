"""Exact output laws of the linear diffusion samplers on a stationary Gaussian deblurring problem.

Prior N(mu, Sigma) with Sigma circulant (power spectrum p), operator a periodic blur (transfer h),
white noise of std sigma: everything is diagonal in the orthonormal 2D DFT, and a sampler whose
update is affine in x_t, y and fresh noise keeps its iterate Gaussian, with a mean and a variance
per frequency. Running the recursion once per frequency gives the sampler's output law exactly,
without the sampling error that K samples put under every empirical figure (Pierret and Galerne,
"Exact evaluation of the accuracy of diffusion models for inverse problems with Gaussian data
distributions", 2025).

The update, written as in their Algorithm 8 (DDPM with a Gaussian approximation of p(y | x_t)):
    x0_hat = E[x0 | x_t]                       (exact for this prior: mu + g (x_t - sqrt(a) mu))
    x0_post = x0_hat + (1 - a) / sqrt(a) * J^T A^T C_t^-1 (y - A x0_hat)   (J = g, Tweedie's formula)
    x_{t-1} = DDIM step of eta from x0_post    (eta = 1: ancestral, the DDPM posterior variance)
with the likelihood covariance C_t of each method:
    "dps":   sigma^2 / alpha I                 (DPS's Gaussian form, alpha its step)
    "pigdm": (1 - a) A A^T + sigma^2 I
    "cgdm":  A Cov(x0 | x_t) A^T + sigma^2 I = (1 - a) A Sigma Sigma_t^-1 A^T + sigma^2 I
             (exact here; MMPS with an exact solve)
and "pigdm-published": the published implementations' weighting, the guidance J^T A^T C_t^-1 r of
pigdm added to the DDIM step from x0_hat with weight sqrt(a_{t-1} a_t) (1 - a_t).
This is written from the algorithms, apart from medrecon_samplers' code, so that the two can check
each other: the samplers' empirical laws must agree with these within sampling error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

METHODS = ("dps", "pigdm", "cgdm", "pigdm-published")


@dataclass
class Affine:
    """c * x_t + b, per frequency (c, b complex arrays or scalars)."""

    c: torch.Tensor
    b: torch.Tensor

    def __add__(self, other: Affine) -> Affine:
        return Affine(self.c + other.c, self.b + other.b)

    def __sub__(self, other: Affine) -> Affine:
        return Affine(self.c - other.c, self.b - other.b)

    def scale(self, k) -> Affine:
        return Affine(k * self.c, k * self.b)

    def shift(self, v) -> Affine:
        return Affine(self.c, self.b + v)


@dataclass
class Law:
    """A Gaussian per frequency of the orthonormal DFT: mean (complex, H x W) and variance (real)."""

    mean_hat: torch.Tensor
    variance: torch.Tensor
    #: the largest standard deviation any frequency of the iterate reached on the way (a law can end
    #: finite after a transient that float32 arithmetic does not survive)
    peak_std: float = 0.0

    def mean(self) -> torch.Tensor:
        """The mean as an image."""
        return torch.fft.ifft2(self.mean_hat, norm="ortho").real


def sampler_law(
    method: str,
    *,
    spectrum: torch.Tensor,
    prior_mean: float,
    transfer: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    alphas_cumprod: torch.Tensor,
    times: list[int],
    eta: float = 1.0,
    alpha: float = 1.0,
    variance: str = "posterior",
) -> Law:
    """The exact law of `method`'s output after the steps `times` (descending), from x_T ~ N(0, I)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    p = spectrum.double()
    h = transfer.to(torch.complex128)
    y_hat = torch.fft.fft2(y.double(), norm="ortho")
    n = p.numel()
    mu_hat = torch.zeros_like(y_hat)
    mu_hat[0, 0] = prior_mean * n**0.5
    s2 = sigma**2
    abar = alphas_cumprod.double()
    mean, var = torch.zeros_like(y_hat), torch.ones_like(p)  # x_T ~ N(0, I)
    identity = Affine(torch.ones_like(y_hat), torch.zeros_like(y_hat))
    peak = 1.0
    for i, t in enumerate(times):
        a = abar[t]
        a_prev = abar[times[i + 1]] if i + 1 < len(times) else torch.tensor(1.0, dtype=torch.float64)
        g = a.sqrt() * p / (a * p + 1 - a)  # Tweedie's gain = J
        x0 = identity.scale(g).shift((1 - g * a.sqrt()) * mu_hat)
        if method == "dps":
            c = torch.full_like(p, s2 / alpha)
        elif method == "cgdm":
            c = (1 - a) * p / (a * p + 1 - a) * h.abs() ** 2 + s2
        else:
            c = (1 - a) * h.abs() ** 2 + s2
        residual = x0.scale(-h).shift(y_hat)  # y - A x0_hat
        guidance = residual.scale(g * h.conj() / c)  # J^T A^T C^-1 (y - A x0_hat)
        s = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp_min(0).sqrt()
        d = (1 - a_prev - s**2).clamp_min(0).sqrt()
        if variance == "beta":  # DDPM's other variance: the same mean, noise of variance beta_t
            s = (1 - a / a_prev).sqrt()
        if method == "pigdm-published":
            eps = (identity - x0.scale(a.sqrt())).scale(1 / (1 - a).sqrt())
            x_prev = x0.scale(a_prev.sqrt()) + eps.scale(d) + guidance.scale((a_prev * a).sqrt() * (1 - a))
        else:
            x0_post = x0 + guidance.scale((1 - a) / a.sqrt())
            eps = (identity - x0_post.scale(a.sqrt())).scale(1 / (1 - a).sqrt())
            x_prev = x0_post.scale(a_prev.sqrt()) + eps.scale(d)
        mean = x_prev.c * mean + x_prev.b
        var = x_prev.c.abs() ** 2 * var + s**2
        peak = max(peak, float(var.max().sqrt()))
    return Law(mean, var, peak)


def law_inputs(prior, problem) -> dict:
    """What `sampler_law` needs of a Gaussian prior and a periodic-blur problem, besides the times."""
    from medrecon_priors.gaussian import periodic_transfer

    return {
        "spectrum": prior.spectrum(tuple(problem.operator.domain_shape)),
        "prior_mean": prior.mu,
        "transfer": periodic_transfer(problem.operator),
        "y": problem.y,
        "sigma": problem.noise_std,
        "alphas_cumprod": prior.alphas_cumprod,
    }


def law_errors(law: Law, posterior, prior_mean: float) -> dict[str, float]:
    """`GaussianPosterior.errors`' figures, computed exactly for a law."""
    return posterior.gaussian_errors(law.mean(), law.variance, prior_mean)


def tune_dps_alpha(w2_of, low: float = 1e-5, high: float = 10.0, per_decade: int = 4) -> float:
    """The alpha minimising `w2_of(alpha)` (inf where the chain is unusable): a log grid, then
    golden-section refinement between the best point's neighbours. The exact W2 costs one recursion
    over frequencies, so DPS gets its most favourable step."""
    import math

    count = int(round(math.log10(high / low) * per_decade)) + 1
    grid = [math.log(low) + i * math.log(high / low) / (count - 1) for i in range(count)]
    values = [w2_of(math.exp(g)) for g in grid]
    best = min(range(count), key=values.__getitem__)
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, count - 1)]
    ratio = (5**0.5 - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = w2_of(math.exp(a)), w2_of(math.exp(b))
    for _ in range(12):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = w2_of(math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = w2_of(math.exp(b))
    candidates = [(values[best], grid[best]), (fa, a), (fb, b)]
    return math.exp(min(candidates)[1])
