"""Blind deblurring: the image and the blur kernel are both unknown.

- `blind-dps` (Chung, Kim, Kim, Ye, CVPR 2023, "Parallel diffusion models of operator and image for
  blind inverse problems"): two reverse diffusions run side by side, the image under the image prior
  and the kernel under a kernel diffusion prior; at every step both are pulled towards the
  measurement by the gradient of ||y - k0_hat * x0_hat|| + l1 ||k0_hat||_1 in their noisy iterates.
- `blind-dds`: diffusion EM in DDS's form: at every step the image's Tweedie estimate takes DDS's
  CG data-consistency step with the current kernel, and (in the second half of the run) the kernel
  takes least-squares steps against that refined image.
- `blind-tv`: the classical baseline, alternating minimisation of 1/2 ||y - k * x||^2 + TV(x) over
  the image (ADMM) and over the kernel (projected gradient onto non-negative kernels summing to one).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

import torch

from medrecon import (
    BLIND_OPERATOR,
    DIFFUSION_PRIOR,
    PROXIMAL_PRIOR,
    DiffusionPrior,
    InputError,
    Prior,
    Problem,
    Reconstruction,
    Sampler,
    Step,
)
from medrecon.numerics import clip_and_normalise, conjugate_gradient, ddim_step, noise_of
from medrecon.numerics.intensity import IntensityMap, percentile_map
from medrecon_samplers.decomposed import dds_step
from medrecon_samplers.diffusion_steps import DiffusionSampler, check_parameters


def _check_blind_2d_kernel(problem: Problem, name: str) -> tuple[int, int]:
    op = problem.operator
    shape = tuple(op.params_shape)
    if len(shape) != 2:
        raise InputError(f"{name} estimates 2D kernels (one per slice), the operator's kernel is {shape}")
    return shape


class KernelFrame:
    """Between a kernel prior's images and physical kernels.

    A kernel prior card trained by `medrecon train-prior --kernels` says its kernel size K: kernels
    sit at the top-left K x K of the S x S frame, divided by their maximum and mapped to [-1, 1].
    A physical kernel of odd size k <= K is the central k x k of that K x K block, clipped at zero
    and normalised to sum one."""

    def __init__(self, prior: DiffusionPrior, kernel_shape: tuple[int, int]):
        card = prior.card or {}
        data = (card.get("training") or {}).get("data")
        if not isinstance(data, dict) or data.get("kind") != "kernel":
            raise InputError("blind-dps: kernel_prior must be a kernel prior (train-prior --kernels)")
        data = card["training"]["data"]
        self.size = int(data["kernel_size"])
        self.frame = tuple(card["image_size"])
        if max(kernel_shape) > self.size:
            raise InputError(
                f"blind-dps: the kernel prior covers kernels up to {self.size}x{self.size}, "
                f"the operator's kernel is {kernel_shape[0]}x{kernel_shape[1]}"
            )
        c = self.size // 2
        self.rows = slice(c - kernel_shape[0] // 2, c + kernel_shape[0] // 2 + 1)
        self.cols = slice(c - kernel_shape[1] // 2, c + kernel_shape[1] // 2 + 1)

    def magnitude(self, image: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
        """(..., S, S) prior images -> non-negative (..., k, k) kernel weights (not normalised).
        With `straight_through`, the clip at zero passes gradients unchanged (a pixel below the
        background can still gain weight)."""
        return clip((image[..., self.rows, self.cols] + 1) / 2, 0.0, None, straight_through)

    def kernel(self, image: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
        """The normalised kernel; a weight of 1e-3 at the centre keeps it a valid kernel (a delta)
        when every pixel of the image is at or below the background."""
        weights = self.magnitude(image, straight_through)
        centre = torch.zeros(weights.shape[-2:], dtype=weights.dtype, device=weights.device)
        centre[weights.shape[-2] // 2, weights.shape[-1] // 2] = 1e-3
        weights = weights + centre
        return weights / weights.sum(dim=(-2, -1), keepdim=True)


def clip(value: torch.Tensor, low, high, straight_through: bool) -> torch.Tensor:
    """`value` clipped to [low, high]; with `straight_through`, the clip's gradient is the identity
    (the straight-through estimator) instead of zero outside the range."""
    clipped = value.clamp(low, high)
    return value + (clipped - value).detach() if straight_through else clipped


def blurred_intensity(problem: Problem, prior: DiffusionPrior) -> IntensityMap:
    """The map between physical units and the image prior's: a blur with a kernel summing to one
    keeps intensities, so the measurement's percentiles stand in for the image's (the unknown
    kernel is never needed). The identity for a prior in physical units."""
    if prior.data_range is None:
        return IntensityMap(1.0, 0.0, "none: the image prior works in physical units")
    return percentile_map(problem.y, prior.data_range, "the blurred measurement")


def gaussian_start(shape: tuple[int, int], sigma: float, device) -> torch.Tensor:
    """An isotropic Gaussian kernel of std `sigma` pixels on `shape`, summing to one: the classical
    starting guess of blind deconvolution."""
    axes = [torch.arange(s, device=device, dtype=torch.float32) - s // 2 for s in shape]
    rr, cc = torch.meshgrid(*axes, indexing="ij")
    kernel = torch.exp(-(rr**2 + cc**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def fit_kernel(
    op, image: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, iterations: int
) -> torch.Tensor:
    """`iterations` of projected gradient on 1/2 ||y - k * image||^2 over kernels k from `kernel`:
    step 1 / L (L by power iteration), then negative weights clipped and the sum made one."""
    lipschitz = _kernel_lipschitz(op, image)
    for _ in range(iterations):
        grad = op.adjoint_kernel(op.forward(image, kernel) - y, image)
        kernel = clip_and_normalise(kernel - grad / lipschitz)
    return kernel


def chain_shape(chains: int, domain_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> tuple[int, ...]:
    """(K, 1, ..., k, k): one 2D kernel per chain, broadcast over the slices of a volume."""
    return (chains, *([1] * (len(domain_shape) - 2)), *kernel_shape)


def blind_result(image: torch.Tensor, kernels: torch.Tensor, info: dict) -> Reconstruction:
    """The K chains' images (physical units) and (K, k, k) kernels as the Reconstruction: with
    several chains, the means, the image's std and samples, and the kernels' std."""
    extras = {"kernel": kernels.mean(dim=0)}
    if len(kernels) == 1:
        return Reconstruction(image[0], extras=extras, info=info)
    extras["kernel_std"] = kernels.std(dim=0)
    return Reconstruction(image.mean(dim=0), std=image.std(dim=0), samples=image, extras=extras, info=info)


def load_kernel_prior(weights: str) -> DiffusionPrior:
    """The kernel prior by shipped name or card path, built through the plugin host as any
    component is (the `diffusion` prior with kind "kernel")."""
    import medrecon

    recipe = medrecon.ComponentRecipe("diffusion", {"weights": weights, "kind": "kernel"})
    return medrecon.build_component("prior", recipe)


class BlindDPS(DiffusionSampler):
    """BlindDPS (Chung et al., CVPR 2023): parallel reverse diffusions of image and kernel.

    Both follow ancestral (DDPM) steps from their Tweedie estimates x0_hat (image prior) and k0_hat
    (kernel prior, `kernel_prior`: shipped name or card path), then both iterates take a step of
    `zeta` against the gradient of ||y - k(k0_hat) * x0_hat|| + `l1` ||k0_hat||_1, where the kernel
    is k0_hat clipped at zero and normalised to sum one. A volume is deblurred with one 2D kernel
    shared by all slices; each slice's residual norm counts as a 2D problem of its own (the image
    gradient is their sum, the kernel's their mean), so steps do not depend on the slice count.
    Defaults from the paper's motion-deblurring configuration: 1000 steps,
    zeta = 0.3 for both. The L1 term acts on the kernel image mapped to [0, 1] (the kernel prior's
    frame, 15 x 15 for the shipped one): the paper's weight 1, meant for its 64 x 64 kernel images,
    drove every kernel pixel to zero here and the image diverged (measured: -26 dB), so l1 defaults
    to 0.01. With fewer steps, zeta must grow about as 1 / steps (as for DPS). The image's intensity
    map comes from the measurement (a blur keeps intensities), so the unknown true kernel is never
    used. `extras["kernel"]` is the estimate (and `kernel_std` over several samples).

    `form = "reference"` is the authors' code (BlindDPS/blind-dps, `BlindDPS.p_sample_loop` and
    `blind_condition_methods.py`): the gradient goes through the clipped estimates (x0_hat to the
    prior's range, k0_hat to [-1, 1]), the L1 term acts on the normalised kernel, and both steps
    are `zeta` (and `kernel_zeta`) times sqrt(alpha_bar_t), growing from ~0 to the constant at the
    last step (their code's comment: more stable than the paper's constant step); 1 and 1 at 1000
    steps as there. A kernel clipped at zero and normalised sums to one, so that L1 term is
    constant: the reference has, in effect, no kernel regulariser. `form = "medrecon"` (default)
    is the variant above: constant steps, gradient through the unclipped estimates, L1 on the
    kernel image.

    `straight_through = True` (a medrecon deviation from both, off by default; the demo uses it):
    the kernel's clips (the reference's clip of k0_hat to [-1, 1]; the clip of the weights at zero,
    which only the medrecon form reaches) pass the gradient unchanged (the straight-through
    estimator) while their values stay clipped. Without it, every kernel pixel whose estimate falls
    below the background (-1) gets no gradient, so the data cannot switch on a pixel the kernel
    prior's draw left off and the kernel stays, in effect, a prior draw:
    measured on the demo's deblurring case (validation slice, reference form, zeta 12, 100 steps,
    sampler seeds 100-104), kernel errors with kernel_zeta 0.03 are 0.43-1.35 (mean 0.879), with
    no kernel step at all 0.43-1.32 (0.852); with it and kernel_zeta 1, 0.44-0.60 (0.516). The
    demo's zeta 12 and kernel_zeta 1 held against a re-tune straight through (same seeds, mean
    kernel error): kernel_zeta 0.5 / 2, 0.566 / 0.539; zeta 6 / 24, 0.633 / 0.535.
    """

    requires = (BLIND_OPERATOR, DIFFUSION_PRIOR)
    #: network evaluations per step: the image prior's and the kernel prior's
    nfe_per_step = 2

    def __init__(
        self,
        steps: int = 1000,
        samples: int = 1,
        zeta: float = 0.3,
        kernel_zeta: float = 0.3,
        l1: float = 0.01,
        kernel_prior: str = "motion-kernels",
        form: Literal["medrecon", "reference"] = "medrecon",
        straight_through: bool = False,
    ):
        if samples < 1:
            raise InputError(f"blind-dps: samples must be >= 1, got {samples}")
        if zeta < 0 or kernel_zeta < 0 or l1 < 0:
            raise InputError("blind-dps: zeta, kernel_zeta and l1 must be >= 0")
        if form not in ("medrecon", "reference"):
            raise InputError(f"blind-dps: form must be 'medrecon' or 'reference', got {form!r}")
        super().__init__(steps, samples, eta=1.0)
        self.zeta, self.kernel_zeta, self.l1 = zeta, kernel_zeta, l1
        self.kernel_prior, self.form, self.straight_through = kernel_prior, form, straight_through

    def iterate(
        self, problem: Problem, prior: DiffusionPrior, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        op, y = problem.operator, problem.y
        device = y.device
        kernel_shape = _check_blind_2d_kernel(problem, "blind-dps")
        kprior = load_kernel_prior(self.kernel_prior).to(device)
        frame = KernelFrame(kprior, kernel_shape)
        if len(kprior.alphas_cumprod) != len(prior.alphas_cumprod):
            raise InputError("blind-dps: the image and kernel priors must share the number of time steps")
        data_range = prior.data_range
        intensity = blurred_intensity(problem, prior)
        scale, offset = intensity.scale, intensity.offset
        times = self.times(prior)
        abar_x = prior.alphas_cumprod.to(device)
        abar_k = kprior.alphas_cumprod.to(device)
        gen = torch.Generator().manual_seed(int(seed))
        k_count = self.samples
        x_shape = (k_count, *op.domain_shape)
        k_shape = chain_shape(k_count, op.domain_shape, frame.frame)
        x = torch.randn(x_shape, generator=gen).to(device)
        k = torch.randn(k_shape, generator=gen).to(device)
        y_model = y / scale
        slices = op.domain_shape[0] if len(op.domain_shape) == 3 else 1
        reference = self.form == "reference"
        lo, hi = data_range or (-float("inf"), float("inf"))
        for i, t in enumerate(times):
            t_prev = times[i + 1] if i + 1 < len(times) else None
            ax, ak = abar_x[t], abar_k[t]
            one = torch.ones((), device=device)
            ax_prev = abar_x[t_prev] if t_prev is not None else one
            ak_prev = abar_k[t_prev] if t_prev is not None else one
            with torch.enable_grad():
                x_leaf = x.detach().requires_grad_(True)
                k_leaf = k.detach().requires_grad_(True)
                x0 = prior.predict_x0(x_leaf, t)
                k0 = kprior.predict_x0(k_leaf.reshape(-1, *frame.frame), t).reshape(k_shape)
                if reference:  # the gradient goes through the clipped estimates
                    x0, k0 = x0.clamp(lo, hi), clip(k0, -1.0, 1.0, self.straight_through)
                kernel = frame.kernel(k0, self.straight_through)
                # the data term in model units: (y - k * (s x0 + o)) / s, one norm per chain and slice
                residual = y_model - op.forward(x0 + offset / scale, kernel)
                norms = torch.linalg.vector_norm(residual.reshape(k_count, slices, -1), dim=2)
                # the reference's L1 acts on the normalised kernel, which sums to one: a constant,
                # without gradient (detached: through straight-through clips it would have one)
                sparsity = kernel.detach() if reference else frame.magnitude(k0)
                loss = norms.sum() + self.l1 * slices * sparsity.abs().sum()
                gx, gk = torch.autograd.grad(loss, (x_leaf, k_leaf))
                gk = gk / slices  # the shared kernel sees the mean over slices
            # Tweedie estimates clipped to the priors' ranges before the ancestral step, as the
            # reference implementation does (clip_denoised): without it short runs blew up
            x0, k0 = x0.detach().clamp(lo, hi), k0.detach().clamp(-1.0, 1.0)
            x_noise = torch.randn(x_shape, generator=gen).to(device)
            k_noise = torch.randn(k_shape, generator=gen).to(device)
            growth = ax.sqrt() if reference else 1.0  # the reference's zeta_t = sqrt(alpha_bar_t)
            x = ddim_step(x0, noise_of(x, x0, ax), ax, ax_prev, 1.0, x_noise) - self.zeta * growth * gx
            k = ddim_step(k0, noise_of(k, k0, ak), ak, ak_prev, 1.0, k_noise) - self.kernel_zeta * growth * gk
            yield Step(i, len(times), intensity.to_physical(x0).mean(dim=0))
        image = intensity.to_physical(x0)
        kernels = frame.kernel(k0).reshape(k_count, *kernel_shape)
        info = {
            "nfe": self.nfe(len(times)),
            "steps": len(times),
            "samples": k_count,
            "kernel_prior": self.kernel_prior,
            "form": self.form,
            "straight_through": self.straight_through,
            "intensity": intensity.describe(),
        }
        return blind_result(image, kernels, info)


class BlindDDS(DiffusionSampler):
    """Blind DDS: diffusion EM in the form of DDS (a medrecon sampler; the alternation is that of
    Fast Diffusion EM, Laroche, Almansa, Coupete, WACV 2024, and GibbsDDRM, Murata et al., ICML
    2023, but with one kernel update per diffusion step instead of outer EM rounds, and without a
    kernel prior).

    At each step: the image prior's Tweedie estimate x0_hat (clipped to the prior's range);
    DDS's data-consistency step with the current kernel k, `cg_iterations` of CG on
    (A_k^T A_k + gamma I) x = A_k^T y + gamma x0_hat from x0_hat (gamma absolute: ||A_k|| is at
    most 1, and close to it, for a kernel summing to one); from step `kernel_start` x steps on,
    the kernel step (EM's M-step): `kernel_iterations` of projected gradient on 1/2 ||y - k * x||^2
    over non-negative kernels summing to one at that refined x, warm-started from the current k;
    then DDS's step to t - 1 from the refined x. The kernel starts as an isotropic Gaussian of std
    `initial_sigma` pixels, wider than most blurs: the kernel step narrows a wide start but does
    not widen a narrow one (from a narrow start the refined image stays blurred and explains y with
    the narrow kernel).
    One network evaluation per step, no network gradient. A volume's slices share one 2D kernel per
    chain. The image's intensity map comes from the measurement, as BlindDPS's. `extras["kernel"]`
    is the estimate (and `kernel_std` over several samples).

    Waiting with the kernel matters: fitted to the blurry early estimates, the kernel goes its own
    way and the image follows it. Chosen on the demo's deblurring case (validation slice, sampler
    seed 100, 100 steps, 10 kernel iterations, a start of std 2 px): kernel steps from the first
    step (gamma 1) gave kernel error 0.642 and 28.04 dB; from step 0.3 x steps (gamma 0.03) 0.454;
    from halfway with gamma 0.1 / 0.03 / 0.01 / 0.003, 0.445 / 0.405 / 0.397 / 0.395; with gamma
    0.01 and 50 kernel iterations 0.388 and 30.34 dB; then the start: std 1 / 1.5 / 2 / 3 / 4 px
    gave 1.118 / 0.546 / 0.388 / 0.362 / 0.364 (blind TV from 1 / 1.5 / 2 / 3 px: 1.060 / 0.479 /
    0.405 / 0.511). The defaults (3 px) over sampler seeds 100-104: kernel error 0.361-0.362, 30.95
    to 31.09 dB (blind TV from its 2 px: 0.405, 28.55 dB), all with the refined image below.
    `result` = "denoised" (default) returns the network's last estimate x0_hat, "refined" the last
    data-consistency step's output (DDS's x_0), which fits part of the measurement noise; the kernel
    is the one fitted to the refined image either way. Measured on the validation slice (sampler
    seeds 100-104, `benchmarks/blind_kernel.py --seeds 5 --method blind-dds --result refined
    --result denoised`): refined 30.95 to 31.09 dB (mean 31.03), SSIM 0.750; denoised 31.72 to
    31.80 dB (mean 31.76), SSIM 0.816; blind TV 28.55 dB, SSIM 0.898."""

    requires = (BLIND_OPERATOR, DIFFUSION_PRIOR)

    def __init__(
        self,
        steps: int = 100,
        samples: int = 1,
        eta: float = 0.85,
        gamma: float = 0.01,
        cg_iterations: int = 5,
        kernel_iterations: int = 50,
        kernel_start: float = 0.5,
        initial_sigma: float = 3.0,
        result: Literal["refined", "denoised"] = "denoised",
    ):
        super().__init__(steps, samples, eta)
        check_parameters(
            "blind-dds",
            result=(result, result in ("refined", "denoised"), "'refined' or 'denoised'"),
            gamma=(gamma, gamma >= 0, ">= 0"),
            cg_iterations=(cg_iterations, cg_iterations >= 1, ">= 1"),
            kernel_iterations=(
                kernel_iterations,
                kernel_iterations >= 0,
                ">= 0 (0: the kernel stays its start)",
            ),
            kernel_start=(kernel_start, 0 <= kernel_start <= 1, "a fraction of the steps in [0, 1]"),
            initial_sigma=(initial_sigma, initial_sigma > 0, "> 0 pixels"),
        )
        self.gamma = gamma
        self.cg_iterations = cg_iterations
        self.kernel_iterations = kernel_iterations
        self.kernel_start = kernel_start
        self.initial_sigma = initial_sigma
        self.result = result

    def iterate(
        self, problem: Problem, prior: DiffusionPrior, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        op, y = problem.operator, problem.y
        device = y.device
        kernel_shape = _check_blind_2d_kernel(problem, "blind-dds")
        intensity = blurred_intensity(problem, prior)
        # y = k * (s x + o) for the prior's image x: y / s = k * (x + o / s), with the zero boundary
        y_model, shift = y / intensity.scale, intensity.offset / intensity.scale
        lo, hi = prior.data_range or (-float("inf"), float("inf"))
        times = self.times(prior)
        abar = prior.alphas_cumprod.to(device)
        gen = torch.Generator().manual_seed(int(seed))
        chains = self.samples
        k_shape = chain_shape(chains, op.domain_shape, kernel_shape)
        kernels = gaussian_start(kernel_shape, self.initial_sigma, device).expand(k_shape).clone()
        first_kernel_step = int(self.kernel_start * len(times))
        one = torch.ones((), device=device)
        x = torch.randn((chains, *op.domain_shape), generator=gen).to(device)
        for i, t in enumerate(times):
            a_t = abar[t]
            a_prev = abar[times[i + 1]] if i + 1 < len(times) else one
            z = torch.randn(x.shape, generator=gen).to(device)
            # denoising step: Tweedie's estimate and the noise it implies
            x0_hat = prior.predict_x0(x, t).clamp(lo, hi)
            eps_hat = noise_of(x, x0_hat, a_t)
            # data-consistency step (E-step) with the current kernels, on the image in y's units
            start = x0_hat + shift

            def normal(v: torch.Tensor, k=kernels) -> torch.Tensor:
                return op.adjoint(op.forward(v, k), k) + self.gamma * v

            rhs = op.adjoint(y_model, kernels) + self.gamma * start
            refined = conjugate_gradient(normal, rhs, start, iterations=self.cg_iterations, batch_dims=1)
            # kernel step (M-step), once the image estimate has settled
            if self.kernel_iterations and i >= first_kernel_step:
                kernels = torch.stack(
                    [
                        fit_kernel(op, refined[c], y_model, kernels[c], self.kernel_iterations)
                        for c in range(chains)
                    ]
                )
            x0 = refined - shift
            # sampling step: DDS's step to t - 1 from the refined estimate
            x = dds_step(x0, eps_hat, a_prev, self.eta, z)
            yield Step(i, len(times), intensity.to_physical(x0).mean(dim=0))
        image = intensity.to_physical(x0_hat if self.result == "denoised" else x0)
        info = {
            "nfe": self.nfe(len(times)),
            "steps": len(times),
            "samples": chains,
            "result": self.result,
            "gamma": self.gamma,
            "initial_sigma": self.initial_sigma,
            "kernel_iterations": self.kernel_iterations,
            "kernel_start": self.kernel_start,
            "intensity": intensity.describe(),
        }
        return blind_result(image, kernels.reshape(chains, *kernel_shape), info)


class BlindTV(Sampler):
    """Classical blind deconvolution by alternating minimisation of 1/2 ||y - k * x||^2 + TV(x)
    (in the spirit of Chan and Wong, IEEE TIP 1998): for `iterations` rounds, `image_iterations`
    of ADMM-TV for x with the current kernel (penalty `rho`), then `kernel_iterations` of projected
    gradient for k (step 1 / L by power iteration; non-negative, sum one). The kernel starts as a
    Gaussian of std `initial_sigma` pixels. The unknown true kernel is never used."""

    requires = (BLIND_OPERATOR, PROXIMAL_PRIOR)

    def __init__(
        self,
        iterations: int = 30,
        image_iterations: int = 5,
        kernel_iterations: int = 10,
        rho: float = 0.05,
        initial_sigma: float = 1.0,
    ):
        if min(iterations, image_iterations, kernel_iterations) < 1 or rho <= 0 or initial_sigma <= 0:
            raise InputError("blind-tv: iteration counts must be >= 1, rho and initial_sigma > 0")
        self.iterations, self.image_iterations = iterations, image_iterations
        self.kernel_iterations, self.rho, self.initial_sigma = kernel_iterations, rho, initial_sigma

    def iterate(
        self, problem: Problem, prior: Prior | None, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        op, y = problem.operator, problem.y
        shape = _check_blind_2d_kernel(problem, "blind-tv")
        kernel = gaussian_start(shape, self.initial_sigma, y.device)
        rho = self.rho  # ||A|| <= 1 for a non-negative kernel summing to one
        x = y.clone()
        z, u = x.clone(), torch.zeros_like(x)
        for i in range(self.iterations):
            aty = op.adjoint(y, kernel)

            def normal(v: torch.Tensor, kernel=kernel) -> torch.Tensor:
                return op.adjoint(op.forward(v, kernel), kernel) + rho * v

            for _ in range(self.image_iterations):
                x = conjugate_gradient(normal, aty + rho * (z - u), x, iterations=5)
                z = prior.prox(x + u, 1.0 / rho)
                u = u + x - z
            kernel = fit_kernel(op, z, y, kernel, self.kernel_iterations)
            yield Step(i, self.iterations, z)
        info = {"nfe": 0, "sampler": "blind-tv", "rho": rho}
        return Reconstruction(z, extras={"kernel": kernel}, info=info)


def _kernel_lipschitz(op, x: torch.Tensor, iterations: int = 10) -> float:
    """||k -> k * x||^2 by power iteration: the Lipschitz constant of the kernel gradient."""
    gen = torch.Generator().manual_seed(0)
    k = torch.rand(op.params_shape, generator=gen).to(x.device)
    value = 1.0
    for _ in range(iterations):
        g = op.adjoint_kernel(op.forward(x, k), x)
        value = float(g.norm() / k.norm().clamp_min(1e-30))
        k = g / g.norm().clamp_min(1e-30)
    return max(value, 1e-12)
