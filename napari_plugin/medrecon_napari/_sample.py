"""Sample data."""

from __future__ import annotations


def shepp_logan_3d() -> list[tuple]:
    """A 3D Shepp-Logan phantom, 64 x 128 x 128 (sigpy), at 1 mm."""
    from medrecon.demo import sample_volume

    return [(sample_volume((64, 128, 128)), {"name": "shepp-logan-3d"}, "image")]
