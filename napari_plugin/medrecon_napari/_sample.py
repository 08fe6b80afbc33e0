"""Sample data: the shipped brain slab (placed by its affine) and a 3D Shepp-Logan phantom."""

from __future__ import annotations


def brain_axial() -> list[tuple]:
    """16 axial slices of the MNI152 template at 64 x 64 (2.8 mm), held out of the brain-axial prior."""
    from medrecon.samples import brain_sample_path
    from medrecon_napari._reader import read_nifti

    data, meta, kind = read_nifti(str(brain_sample_path()))[0]
    return [(data, {**meta, "name": "brain-axial sample"}, kind)]


def shepp_logan_3d() -> list[tuple]:
    """A 3D Shepp-Logan phantom, 64 x 128 x 128 (sigpy), at 1 mm."""
    from medrecon.samples import phantom_volume

    return [(phantom_volume((64, 128, 128)), {"name": "shepp-logan-3d"}, "image")]
