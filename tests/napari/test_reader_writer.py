"""The napari plugin in a real viewer: NIfTI in and out with the affine kept, sample data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.napari


@pytest.fixture
def nifti(tmp_path):
    data = np.random.default_rng(1).random((20, 16, 12)).astype(np.float32)  # (i, j, k)
    affine = np.array([[0.7, 0, 0, -30.0], [0, 0.9, 0, 12.0], [0, 0, 3.0, 45.0], [0, 0, 0, 1]])
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path, data, affine


def test_nifti_opens_placed_by_its_affine(make_napari_viewer, nifti):
    path, data, affine = nifti
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="medrecon")
    assert layer.name == "t1"
    np.testing.assert_array_equal(layer.data, data.transpose(2, 1, 0))
    # Voxel (i, j, k) = (19, 15, 11) is data index (11, 15, 19); napari places it at world (z, y, x).
    world = layer.data_to_world((11, 15, 19))
    x, y, z = (affine @ np.array([19, 15, 11, 1.0]))[:3]
    np.testing.assert_allclose(world, (z, y, x))
    assert layer.metadata["nifti_header"] is not None
    assert [str(u) for u in layer.units] == ["millimeter"] * 3  # RAS world axes, in mm
    assert tuple(layer.axis_labels) == ("superior", "anterior", "right")


def test_writer_round_trips_the_affine(make_napari_viewer, nifti, tmp_path):
    import napari

    path, data, affine = nifti
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="medrecon")
    out = tmp_path / "saved.nii.gz"
    napari.save_layers(str(out), [layer], plugin="medrecon")
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), data)


def test_writer_never_overwrites_the_source(make_napari_viewer, nifti):
    import napari

    path, _, _ = nifti
    before = path.read_bytes()
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="medrecon")
    with pytest.raises(Exception, match="inputs are never overwritten"):
        napari.save_layers(str(path), [layer], plugin="medrecon")
    assert path.read_bytes() == before


def test_sample_phantom_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("medrecon", "shepp-logan-3d")
    layer = viewer.layers["shepp-logan-3d"]
    assert layer.data.shape == (64, 128, 128) and float(layer.data.max()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("key", "resolution", "pixel"), [("brain-1mm", "1mm", 1.0), ("brain-axial", "2.8mm", 181 / 64)]
)
def test_brain_samples_open_placed_by_their_affine(make_napari_viewer, key, resolution, pixel):
    from medrecon.samples import brain_sample

    volume, affine = brain_sample(resolution)
    viewer = make_napari_viewer()
    viewer.open_sample("medrecon", key)
    layer = viewer.layers[f"{key} sample"]
    np.testing.assert_array_equal(layer.data, volume)
    # (D, H, W) = (k, j, i): slices 1 mm apart, pixels of the sample's size, at the template's position
    np.testing.assert_allclose(np.diag(layer.affine.affine_matrix)[:3], [1.0, pixel, pixel])
    np.testing.assert_allclose(layer.affine.affine_matrix[:3, 3], affine[[2, 1, 0], 3])


def test_a_foreign_hdf5_file_is_left_to_other_readers(tmp_path):
    import h5py

    from medrecon_napari._reader import get_reader

    path = tmp_path / "ilastik_project.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("exported_data", data=np.zeros((4, 4)))
    assert get_reader(str(path)) is None
    assert get_reader(str(tmp_path / "missing.h5")) is None
