"""Files: NIfTI volumes, measurement bundles, atomic writes and JSON sidecars."""

from medrecon.io.atomic import atomic_path, check_output_path, sidecar_path, write_json, write_text
from medrecon.io.bundle import Measurement, centre_crop, load_bundle, plain_value, save_bundle
from medrecon.io.nifti import Volume, canonical_view, is_nifti, load_nifti, save_nifti
from medrecon.io.volumes import load_volume, volume_format

__all__ = [
    "Measurement",
    "Volume",
    "atomic_path",
    "canonical_view",
    "centre_crop",
    "check_output_path",
    "is_nifti",
    "load_bundle",
    "load_nifti",
    "load_volume",
    "plain_value",
    "save_bundle",
    "save_nifti",
    "sidecar_path",
    "volume_format",
    "write_json",
    "write_text",
]
