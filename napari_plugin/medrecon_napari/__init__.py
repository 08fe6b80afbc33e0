"""medrecon's napari plugin: NIfTI reader and writer, sample data (declared in napari.yaml).

Nothing heavy is imported here: napari imports this package at start-up.
"""
