"""MONAI adapters: transforms that put simulation and reconstruction into MONAI pipelines."""

from medrecon.monai.transforms import (
    Reconstruct,
    Reconstructd,
    SimulateMeasurement,
    SimulateMeasurementd,
)

__all__ = ["Reconstruct", "Reconstructd", "SimulateMeasurement", "SimulateMeasurementd"]
