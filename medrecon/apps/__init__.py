"""Applications composed from the library core, apart from it: the command line (`cli`), the training
commands (`training`, `conditional_training`, and `native_data`, the training images made from the
shipped template), the demo (`medrecon demo`) with its figures, and the presets the napari widget
offers (the demo's cases)."""
