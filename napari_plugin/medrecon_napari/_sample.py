"""Sample data: the shipped brain slab (placed by its affine) and a 3D Shepp-Logan phantom."""

from __future__ import annotations


def _brain(resolution: str, name: str) -> list[tuple]:
    from medrecon.samples import brain_sample_path
    from medrecon_napari._reader import read_nifti

    data, meta, kind = read_nifti(str(brain_sample_path(resolution)))[0]
    return [(data, {**meta, "name": name}, kind)]


def brain_1mm() -> list[tuple]:
    """16 axial slices of the MNI152 template at 1 mm (233 x 197), held out of the brain-1mm prior."""
    return _brain("1mm", "brain-1mm sample")


def brain_axial() -> list[tuple]:
    """16 axial slices of the MNI152 template at 64 x 64 (2.8 mm), held out of the brain-axial prior."""
    return _brain("2.8mm", "brain-axial sample")


def shepp_logan_3d() -> list[tuple]:
    """A 3D Shepp-Logan phantom, 64 x 128 x 128 (sigpy), at 1 mm."""
    from medrecon.samples import phantom_volume
    from medrecon_napari._affine import placement

    return [(phantom_volume((64, 128, 128)), {"name": "shepp-logan-3d", **placement(None)}, "image")]
