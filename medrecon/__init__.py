"""medrecon: reconstruct medical images and volumes from their measurements with diffusion priors."""

from medrecon._version import __version__
from medrecon.api import (
    build_component,
    build_operator,
    first_look,
    measurement_operator,
    reconstruct,
    reconstruct_steps,
    run_steps,
    simulate,
)
from medrecon.contracts import (
    BLIND_OPERATOR,
    CONDITIONAL_PRIOR,
    DIFFUSION_PRIOR,
    GAUSSIAN_PRIOR,
    LINEAR_OPERATOR,
    NO_PRIOR,
    PROXIMAL_PRIOR,
    SVD,
    BlindOperator,
    ConditionalPrior,
    DiffusionPrior,
    GaussianPrior,
    MeasurementReader,
    Operator,
    Prior,
    Problem,
    ProximalPrior,
    Reconstruction,
    Requirement,
    Sampler,
    SingularDecomposition,
    Step,
    TrainingImages,
    TrainingTask,
    check_compatible,
)
from medrecon.device import resolve_device
from medrecon.errors import (
    Cancelled,
    IncompatibleError,
    InputError,
    MedreconError,
    NumericalError,
    PluginError,
    RecipeError,
)
from medrecon.host.params import CONTEXT_PARAMETERS
from medrecon.host.plugin import PluginHost, default_host, hookimpl
from medrecon.host.recipe import ComponentRecipe, Recipe, ResolvedComponent, parse_value, toml_value
from medrecon.host.specs import DatasetSpec, OperatorSpec, PriorSpec, ReaderSpec, SamplerSpec, TaskSpec
from medrecon.io import (
    Measurement,
    Volume,
    load_bundle,
    load_nifti,
    load_volume,
    save_bundle,
    save_nifti,
)
from medrecon.numerics import adjoint_test, conjugate_gradient, operator_norm


def batch(inputs, recipe, out, **options):
    """Reconstruct a cohort with one recipe on Dask and return the manifest rows: `medrecon.cohort.batch`
    (imported when called, so that `import medrecon` does not load Dask)."""
    from medrecon.cohort import batch as run

    return run(inputs, recipe, out, **options)


#: Submodules that are public API, besides the names above: plugins and front ends may import these
#: and nothing else of medrecon (tests/test_public_api.py enforces it).
PUBLIC_MODULES = (
    "medrecon.apps.presets",
    "medrecon.cohort",
    "medrecon.conditional",
    "medrecon.io",
    "medrecon.metrics",
    "medrecon.monai",
    "medrecon.numerics",
    "medrecon.prior_card",
    "medrecon.samples",
)

__all__ = [
    "__version__",
    "batch",
    "BLIND_OPERATOR",
    "CONDITIONAL_PRIOR",
    "CONTEXT_PARAMETERS",
    "PUBLIC_MODULES",
    "DIFFUSION_PRIOR",
    "GAUSSIAN_PRIOR",
    "LINEAR_OPERATOR",
    "NO_PRIOR",
    "PROXIMAL_PRIOR",
    "SVD",
    "BlindOperator",
    "Cancelled",
    "ComponentRecipe",
    "ConditionalPrior",
    "DatasetSpec",
    "DiffusionPrior",
    "GaussianPrior",
    "IncompatibleError",
    "InputError",
    "Measurement",
    "MeasurementReader",
    "MedreconError",
    "NumericalError",
    "Operator",
    "OperatorSpec",
    "PluginError",
    "PluginHost",
    "Prior",
    "PriorSpec",
    "Problem",
    "ProximalPrior",
    "Recipe",
    "ReaderSpec",
    "RecipeError",
    "ResolvedComponent",
    "Reconstruction",
    "SingularDecomposition",
    "Requirement",
    "Sampler",
    "SamplerSpec",
    "Step",
    "TaskSpec",
    "TrainingImages",
    "TrainingTask",
    "Volume",
    "adjoint_test",
    "build_component",
    "build_operator",
    "check_compatible",
    "conjugate_gradient",
    "default_host",
    "first_look",
    "hookimpl",
    "load_bundle",
    "load_nifti",
    "load_volume",
    "measurement_operator",
    "operator_norm",
    "parse_value",
    "reconstruct",
    "reconstruct_steps",
    "resolve_device",
    "run_steps",
    "save_bundle",
    "save_nifti",
    "simulate",
    "toml_value",
]
