"""Built-in image-restoration operators for medrecon: inpainting and downsampling (super-resolution)."""

from medrecon_restoration.downsample import Downsample
from medrecon_restoration.inpainting import Inpainting

__all__ = ["Downsample", "Inpainting"]
