"""Applications that compose components by recipe, apart from the library core: the demo
(`medrecon demo`), its figures, and the presets the napari widget offers (the demo's cases)."""
