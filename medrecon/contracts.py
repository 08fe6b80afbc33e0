"""What operators, priors and samplers promise each other (the component contracts of the design)."""

from __future__ import annotations

import abc
import copy
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from medrecon.errors import Cancelled, IncompatibleError, InputError

if TYPE_CHECKING:
    from medrecon.conditional import Condition
    from medrecon.io.bundle import Measurement

# ---------------------------------------------------------------------------------------------
# Operators


@dataclass(frozen=True)
class SingularDecomposition:
    """A = U diag(s) V^H, matrix-free (as DDRM's "H functions"): `v_h(x)` takes images (with any
    leading batch dimensions) to their spectral coefficients and `v(c)` back (V unitary on the
    images); `u_h(y)` takes measurements to the same coefficients and `u(c)` back (U with orthonormal
    columns); `singular_values` has the coefficients' shape and may hold zeros (a full
    decomposition). So A x = u(s * v_h(x)) and A^H y = v(conj(s) * u_h(y)); with non-negative s."""

    singular_values: torch.Tensor
    v_h: Callable[[torch.Tensor], torch.Tensor]
    v: Callable[[torch.Tensor], torch.Tensor]
    u_h: Callable[[torch.Tensor], torch.Tensor]
    u: Callable[[torch.Tensor], torch.Tensor]


class Operator(torch.nn.Module, abc.ABC):
    """A forward model y = A(x). Tensors it holds are buffers, so `.to(device)` moves all of it.

    Subclasses set `domain_shape` / `range_shape` (without batch dimension) and the dtypes, and
    implement `forward` and, when linear, `adjoint`. A leading batch dimension is allowed.
    """

    linear: ClassVar[bool] = True
    #: Axis along which the operator acts slice by slice (None if it couples all axes).
    slice_axis: int | None = None

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]
    domain_dtype: torch.dtype = torch.float32
    range_dtype: torch.dtype = torch.float32

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply A."""

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply A^H (linear operators only)."""
        raise NotImplementedError(f"{type(self).__name__} has no adjoint")

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x; operators override this where it is cheaper than two applications."""
        return self.adjoint(self.forward(x))

    def svd(self) -> SingularDecomposition | None:
        """The operator's singular value decomposition where its structure gives one (a mask, a
        periodic blur), else None. With one, `solve_range_system` and `pseudo_inverse` are exact
        without further code (operators may still override them with something cheaper)."""
        return None

    def solve_range_system(self, v: torch.Tensor, scale: float, shift: float) -> torch.Tensor | None:
        """Solve (scale A A^H + shift I) z = v exactly where the structure allows (by default from
        `svd()`), else return None; samplers such as PiGDM fall back to CG then."""
        d = self.svd()
        if d is None:
            return None
        c = d.u_h(v)
        denominator = scale * d.singular_values.abs() ** 2 + shift
        z = d.u(torch.where(denominator > 0, c / denominator.clamp_min(1e-30), torch.zeros_like(c)))
        if shift > 0:  # the part of v outside the range of U, where A A^H is zero
            z = z + (v - d.u(c)) / shift
        return z

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor | None:
        """A^+ y (the minimum-norm x with A x = y) where the structure gives it exactly (by default
        from `svd()`), else None."""
        d = self.svd()
        if d is None:
            return None
        s, c = d.singular_values, d.u_h(y)
        return d.v(torch.where(s > 0, c / s.clamp_min(1e-30), torch.zeros_like(c)))

    #: what `first_look` computes, for labels and for samplers that ask for it by name
    first_look_name: ClassVar[str] = "adjoint"

    def first_look(self, y: torch.Tensor) -> torch.Tensor:
        """A direct image from y, for a first look (readers) and as a start (samplers): the
        operator's direct inverse where its physics has one (filtered back-projection for CT, named
        by `first_look_name`), else the adjoint A^H y."""
        return self.adjoint(y)

    def inverse_variance(self, y: torch.Tensor, noise_std: float) -> torch.Tensor | None:
        """Per-element inverse variance of the noise in y where it is not white (counting noise:
        CT with `photons`), for likelihoods that weight the residual; None (the default) for white
        Gaussian noise of `noise_std`."""
        return None

    @property
    def has_svd(self) -> bool:
        """Whether `svd()` gives a decomposition (what samplers requiring `SVD` use)."""
        return self.svd() is not None

    @property
    def is_complex(self) -> bool:
        return self.range_dtype.is_complex

    @property
    def device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def describe(self) -> dict[str, Any]:
        """Facts about this instance a user should see (realised acceleration, detector count ...).

        Stored with simulated measurements and in every reconstruction's sidecar.
        """
        return {}

    def arrays(self) -> dict[str, torch.Tensor]:
        """Arrays that, passed back to the factory with the same recipe, rebuild this operator.

        Used to store a measurement bundle: a random mask or estimated coil maps travel with `y`.
        """
        return {}

    def check_domain(self, x: torch.Tensor) -> None:
        """Raise InputError unless x is a (batch of) domain element(s) of the right kind."""
        _check_element(x, self.domain_shape, self.domain_dtype, "image", type(self).__name__)

    def check_range(self, y: torch.Tensor) -> None:
        """Raise InputError unless y is a (batch of) measurement(s) of the right kind."""
        _check_element(y, self.range_shape, self.range_dtype, "measurement", type(self).__name__)

    def simulate(self, x: torch.Tensor, noise_std: float, seed: int = 0) -> torch.Tensor:
        """y = A(x) + n with white Gaussian noise of standard deviation `noise_std` in units of y.

        For complex y the noise is circular: E|n|^2 = noise_std^2 (each part noise_std / sqrt 2).
        """
        if not 0 <= noise_std < float("inf"):
            raise InputError(f"noise_std must be a finite number >= 0 (in the units of y), got {noise_std}")
        self.check_domain(x)
        with torch.no_grad():
            y = self.forward(x)
        return y + gaussian_noise(y.shape, y.dtype, noise_std, seed, y.device)


class BlindOperator(Operator):
    """An operator with unknown parameters (a blur kernel): `forward(x, params)`, linear in x for
    given params and in params for a given x. Blind samplers call all of the methods below."""

    @property
    @abc.abstractmethod
    def params_shape(self) -> tuple[int, ...]:
        """Shape of the unknown parameters (the kernel)."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """A(params) x; without params, with the operator's own (simulated or known) ones."""

    @abc.abstractmethod
    def adjoint(self, y: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """A(params)^H y."""

    @abc.abstractmethod
    def adjoint_kernel(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The adjoint of params -> A(params) x at the image x, applied to y: the gradient in the
        parameters of <A(params) x, y> (summed over a batch of images)."""


def gaussian_noise(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    std: float,
    seed: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Seeded white noise (generated on the CPU so that CPU and CUDA runs see the same noise)."""
    gen = torch.Generator().manual_seed(int(seed))
    if dtype.is_complex:
        real = torch.float32 if dtype == torch.complex64 else torch.float64
        parts = torch.randn((*shape, 2), generator=gen, dtype=real) * (std / 2**0.5)
        noise = torch.complex(parts[..., 0], parts[..., 1])
    else:
        noise = torch.randn(shape, generator=gen, dtype=dtype) * std
    return noise.to(device)


def _check_element(t: Any, shape: tuple[int, ...], dtype: torch.dtype, what: str, owner: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{owner}: {what} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape[-len(shape) :]) != tuple(shape) or t.ndim not in (len(shape), len(shape) + 1):
        raise InputError(
            f"{owner}: {what} shape {tuple(t.shape)} does not match: expected {tuple(shape)} "
            f"(optionally with a leading batch dimension)"
        )
    if t.is_complex() != dtype.is_complex:
        kind = "complex" if dtype.is_complex else "real"
        raise InputError(f"{owner}: {what} must be {kind} ({dtype}), got {t.dtype}")


# ---------------------------------------------------------------------------------------------
# Priors


class Prior(abc.ABC):  # noqa: B024 - a marker base: capabilities are the subclasses below
    """Base of all priors; what a prior can do is told by which of the classes below it is."""


class DiffusionPrior(Prior):
    """A denoiser for the variance-preserving diffusion x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.

    A 2D prior applied to a volume works on slices along `slice_axis`, `slice_batch` at a time.
    """

    slice_axis: int = 0
    slice_batch: int = 8
    #: whether a complex image is taken as two real images, its real and imaginary parts
    complex_parts: bool = False
    #: whether samplers take a complex image's smooth background phase out before the prior sees
    #: it (the prior then works on a nearly real, magnitude-like image; see medrecon.numerics.intensity)
    remove_phase: bool = False
    #: the in-plane pixel size (mm) the prior was trained at, when known: reconstructions of data
    #: more than 25% away from it are warned about
    pixel_spacing: tuple[float, float] | None = None
    #: the intensity range the prior was trained on (samplers map the measurement's intensities
    #: onto it, see medrecon.numerics.intensity), or None for a prior in physical units
    data_range: tuple[float, float] | None = None
    #: the training data's background level in that range (an MRI's air), when known
    background: float | None = None
    #: the prior card (name, data, architecture, training), or {} for a prior without one
    card: dict[str, Any] = {}

    @property
    @abc.abstractmethod
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha-bar_t for t = 0 .. T-1 (float32, decreasing)."""

    @abc.abstractmethod
    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The noise estimate eps(x_t, t)."""

    def orient(self, affine: Any) -> str | None:
        """Apply the prior to a volume stored with this NIfTI affine in the orientation it was
        trained on (results stay on the input's grid); a sentence saying what was done, or None
        if nothing had to be (the default: a prior without a trained orientation)."""
        return None

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Tweedie's estimate E[x0 | x_t]."""
        abar = self.alphas_cumprod.to(x_t.device)[t]
        return (x_t - (1 - abar).sqrt() * self.predict_eps(x_t, t)) / abar.sqrt()


class ProximalPrior(Prior):
    """A regularizer R(x) with a proximal map (TV, TV along z, L1-wavelet ...)."""

    @abc.abstractmethod
    def value(self, x: torch.Tensor) -> torch.Tensor:
        """R(x)."""

    @abc.abstractmethod
    def prox(self, x: torch.Tensor, step: float) -> torch.Tensor:
        """argmin_z R(z) + ||z - x||^2 / (2 step)."""


class GaussianPrior(DiffusionPrior):
    """A Gaussian prior: its score is exact, and so is the posterior of a linear Gaussian problem."""

    @abc.abstractmethod
    def posterior(self, problem: Problem) -> tuple[torch.Tensor, Any]:
        """Exact posterior mean and covariance (in a form the prior documents)."""


class ConditionalPrior(Prior):
    """A learned model of the posterior: E[x0 | x_t, y] from x_t, t and the measurement, which its
    network sees through the operator's `forward` / `adjoint` (and `gram`), so any linear operator
    plugs into it (BCDM, Diff-Unfolding). The noise schedule, intensity range and slicing mean what
    they mean for a DiffusionPrior; a conditional model takes real images (`complex_parts` False)
    unless its card says otherwise."""

    slice_axis: int = 0
    slice_batch: int = 8
    complex_parts: bool = False
    remove_phase: bool = False
    pixel_spacing: tuple[float, float] | None = None
    data_range: tuple[float, float] | None = None
    background: float | None = None
    card: dict[str, Any] = {}
    #: network evaluations one `predict_x0` costs (an unrolled model's blocks), for NFE counts
    network_passes: int = 1

    @property
    @abc.abstractmethod
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha-bar_t for t = 0 .. T-1 (float32, decreasing)."""

    @abc.abstractmethod
    def condition(self, problem: Problem) -> Condition:
        """What the network needs of a problem (in the model's units), computed once per run:
        A^H y (`aty`), the operator's squared norm (`norm2`), the noise variance."""

    @abc.abstractmethod
    def predict_x0(self, x_t: torch.Tensor, t: int, condition: Condition) -> torch.Tensor:
        """The posterior-mean estimate E[x0 | x_t, y] for chains x_t (K, *domain_shape)."""


# ---------------------------------------------------------------------------------------------
# Training records: what a plugin's training tasks and datasets give the core's training commands


@dataclass(frozen=True)
class TrainingTask:
    """A family of operators to train a conditional model on (a `TaskSpec` factory's result).

    `draw(uniform)` returns one operator recipe table (`{"name": ..., **params}`) from the
    family, `uniform()` giving numbers in [0, 1) from the training's seeded generator; `noise` is
    the range of relative noise levels (noise std / rms of the noiseless measurement), drawn
    log-uniformly; `validation` is the fixed recipe the validation loss is measured with; `ranges`
    describes the family on the model's card."""

    name: str
    draw: Callable[[Callable[[], float]], dict[str, Any]]
    ranges: dict[str, Any]
    validation: dict[str, Any]
    noise: tuple[float, float] = (1e-3, 3e-2)

    @staticmethod
    def pick(uniform: Callable[[], float], options: Sequence[Any]) -> Any:
        """One of `options`, each equally likely, for a `draw`."""
        return options[min(int(uniform() * len(options)), len(options) - 1)]

    @staticmethod
    def within(value: Any, low: Any, high: Any) -> Any:
        """`value`, or the nearest end of LOW..HIGH when it lies outside: a task's usual validation
        setting, kept inside the range the task trains on."""
        return min(max(value, low), high)


@dataclass(frozen=True)
class TrainingImages:
    """Generated images to train an image prior on (a `DatasetSpec` factory's result): `images`
    (N, 1, S, S) float32 in `intensity["data_range"]`, `data` and `intensity` for the card, and
    the network `architecture` the dataset suits (None: the caller's default)."""

    images: torch.Tensor
    data: dict[str, Any]
    intensity: dict[str, Any]
    architecture: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Readers: measurements in file formats other than medrecon's bundle


class MeasurementReader(abc.ABC):
    """Reads the measurements of a file format a plugin knows (a `ReaderSpec` factory's result):
    a dataset's raw files, a scanner's export. `medrecon.load_bundle` asks each installed reader
    whether it `accepts` a file that is no medrecon bundle, and the first that does `read`s it."""

    @abc.abstractmethod
    def accepts(self, path: Path) -> bool:
        """Whether the file is in this reader's format (a cheap look, no full read; False, not an
        error, for a file that is not)."""

    @abc.abstractmethod
    def read(self, path: Path) -> Measurement:
        """The file as a `medrecon.Measurement`: y, the operator's recipe and arrays, the noise
        level where it is known, and the ground truth, affine and crop where the file has them."""

    def metrics(self, reference: Any, estimate: Any) -> dict[str, float] | None:
        """Scores in the format's own convention (a dataset's challenge metrics), reported beside
        medrecon's; None (the default) for none."""
        return None


# ---------------------------------------------------------------------------------------------
# Problems and results


@dataclass
class Problem:
    """A measurement y of an unknown x through `operator`, with white noise of std `noise_std`;
    where the operator models noise that is not white (counting noise), `inverse_variance` holds
    its per-element inverse variance (from `operator.inverse_variance` unless given)."""

    operator: Operator
    y: torch.Tensor
    noise_std: float
    inverse_variance: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.noise_std, int | float) or not 0 <= self.noise_std < float("inf"):
            raise InputError(
                f"noise_std must be a finite number >= 0 (in the units of y), got {self.noise_std!r}"
            )
        self.noise_std = float(self.noise_std)
        self.operator.check_range(self.y)
        if not torch.isfinite(self.y).all():
            bad = int((~torch.isfinite(self.y)).sum())
            raise InputError(f"measurement y holds {bad} NaN or Inf value(s); it must be finite")
        if self.inverse_variance is None:
            self.inverse_variance = self.operator.inverse_variance(self.y, self.noise_std)


@dataclass
class Reconstruction:
    """The result of a run: the image (posterior mean if several samples), std map, samples, info."""

    image: torch.Tensor
    std: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    #: Other estimated quantities, such as the kernel of a blind problem.
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One step of a sampler: drives progress bars, previews and cancellation."""

    index: int
    total: int
    estimate: torch.Tensor | None = None
    message: str = ""


# ---------------------------------------------------------------------------------------------
# Samplers and what they require


@dataclass(frozen=True)
class Requirement:
    """Something a sampler needs of the operator or the prior, and how to say what was given instead."""

    name: str
    needs: str
    check: Callable[[Operator, Prior | None], bool]
    given: Callable[[Operator, Prior | None], str]

    def __call__(self, operator: Operator, prior: Prior | None) -> bool:
        return self.check(operator, prior)


def _given_prior(operator: Operator, prior: Prior | None) -> str:
    if prior is None:
        return "was given no prior"
    for cls, words in (
        (GaussianPrior, "a Gaussian prior"),
        (DiffusionPrior, "a diffusion prior"),
        (ConditionalPrior, "a conditional model"),
        (ProximalPrior, "a proximal prior"),
    ):
        if isinstance(prior, cls):
            return f"was given {words} ({type(prior).__name__})"
    return f"was given {type(prior).__name__}"


def _operator_lacks(what: str) -> Callable[[Operator, Prior | None], str]:
    return lambda op, pr: f"operator {type(op).__name__} {what}"


DIFFUSION_PRIOR = Requirement(
    "diffusion-prior",
    "a diffusion prior",
    lambda op, pr: isinstance(pr, DiffusionPrior),
    _given_prior,
)
CONDITIONAL_PRIOR = Requirement(
    "conditional-prior",
    "a conditional model (prior 'conditional')",
    lambda op, pr: isinstance(pr, ConditionalPrior),
    _given_prior,
)
PROXIMAL_PRIOR = Requirement(
    "proximal-prior", "a proximal prior", lambda op, pr: isinstance(pr, ProximalPrior), _given_prior
)
GAUSSIAN_PRIOR = Requirement(
    "gaussian-prior", "a Gaussian prior", lambda op, pr: isinstance(pr, GaussianPrior), _given_prior
)
NO_PRIOR = Requirement("no-prior", "no prior", lambda op, pr: pr is None, _given_prior)
LINEAR_OPERATOR = Requirement(
    "linear-operator",
    "a linear operator",
    lambda op, pr: op.linear,
    _operator_lacks("is not linear"),
)
SVD = Requirement("svd", "an operator with an SVD", lambda op, pr: op.has_svd, _operator_lacks("has no SVD"))
BLIND_OPERATOR = Requirement(
    "blind-operator",
    "a blind operator (unknown parameters such as a kernel)",
    lambda op, pr: isinstance(op, BlindOperator),
    _operator_lacks("has no unknown parameters"),
)


def check_compatible(sampler: Sampler, operator: Operator, prior: Prior | None) -> None:
    """Raise IncompatibleError, in one sentence, if the sampler cannot run on this pairing."""
    name = sampler.name or type(sampler).__name__
    for req in sampler.requires:
        if not req(operator, prior):
            raise IncompatibleError(f"sampler '{name}' needs {req.needs}, but {req.given(operator, prior)}.")


ProgressFn = Callable[[Step], None]
CancelFn = Callable[[], bool]


class Sampler(abc.ABC):
    """Draws a reconstruction of a Problem under a Prior.

    Subclasses implement `iterate`, a generator yielding one Step per iteration and returning
    the Reconstruction; `run` drives it with a progress callback and cancellation.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[Requirement, ...]] = ()

    @property
    def planned_nfe(self) -> int:
        """Network evaluations a run will take, known before it starts (0 without a network);
        what a user weighs the cost of a run by, before pressing Run."""
        return 0

    @abc.abstractmethod
    def iterate(
        self, problem: Problem, prior: Prior | None, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]: ...

    def run_steps(
        self, problem: Problem, prior: Prior | None = None, *, seed: int = 0
    ) -> Generator[Step, None, Reconstruction]:
        """`iterate` with the pairing checked first and `seconds` / `seed` put into `info`.

        A sampler's `iterate` keeps what a run needs (warm-started ADMM variables, a seeded
        generator, cached A^H y) in its own local variables, as the built-in samplers do
        (tests/plugins/test_sampler_loops.py), so one instance can run twice, even at once, and is
        the same recipe afterwards. The run still works on a shallow copy of the sampler, so that a
        third-party sampler that stores a run's state on `self` does not leak it into the next."""
        check_compatible(self, problem.operator, prior)
        start = time.perf_counter()
        result = yield from copy.copy(self).iterate(problem, prior, seed=seed)
        result.info.setdefault("seconds", time.perf_counter() - start)
        result.info.setdefault("seed", seed)
        return result

    def run(
        self,
        problem: Problem,
        prior: Prior | None = None,
        *,
        seed: int = 0,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> Reconstruction:
        """Run to the end; `progress` sees each Step, `cancel()` returning True stops between steps."""
        return drive(self.run_steps(problem, prior, seed=seed), progress, cancel)


def drive(
    steps: Generator[Step, None, Reconstruction],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Reconstruction:
    """Run a generator of Steps to its Reconstruction, reporting progress and honouring cancel."""
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(step)
        if cancel is not None and cancel():
            steps.close()
            raise Cancelled(f"cancelled after step {step.index + 1} of {step.total}")
