"""Volumes in the formats people have (through MONAI's readers): a DICOM CT series written with
pydicom, NRRD, MetaImage (.mha / .mhd through ITK); each as float32 (D, H, W) with a RAS affine, in
the API, the CLI and napari."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import medrecon
from medrecon.apps.cli import main

SLICES, THICKNESS = 6, 2.5


@pytest.fixture
def dicom_series(tmp_path):
    """A CT series of 6 slices from pydicom's CT_small.dcm (128 x 128), one file per slice, written
    in shuffled order under names that do not sort by position; each slice offset by 10 HU x index."""
    import pydicom  # the test extra installs it, as "medrecon[dicom]" does for users
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    folder = tmp_path / "ct_series"
    folder.mkdir()
    series = generate_uid()
    origin = [round(float(v), 3) for v in template.ImagePositionPatient]
    raw = template.pixel_array.astype(np.int16)
    for n, i in enumerate([3, 0, 5, 1, 4, 2]):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [origin[0], origin[1], round(origin[2] + THICKNESS * i, 3)]
        ds.SliceLocation = round(origin[2] + THICKNESS * i, 3)
        ds.SliceThickness = THICKNESS
        ds.PixelData = (raw + int(round(10 / float(ds.RescaleSlope))) * i).astype(raw.dtype).tobytes()
        ds.save_as(folder / f"IM{n:04d}")  # no suffix: found by the DICM marker
    hu = raw * float(template.RescaleSlope) + float(template.RescaleIntercept)
    return folder, hu, [float(v) for v in template.PixelSpacing]


def test_a_dicom_series_folder_reads_as_one_volume_in_hounsfield_units(dicom_series):
    folder, hu, (row_mm, col_mm) = dicom_series
    vol = medrecon.load_volume(folder)
    assert vol.data.shape == (SLICES, 128, 128) and vol.data.dtype == np.float32
    for i in range(SLICES):  # ordered by position, rescaled to HU (slice i is 10 HU x i brighter)
        np.testing.assert_allclose(vol.data[i], hu + 10 * i, atol=1e-3)
    assert np.allclose(vol.spacing, (THICKNESS, row_mm, col_mm))
    # DICOM's LPS patient axes are turned into RAS: x and y flip sign, z stays
    directions = vol.affine[:3, :3] / np.linalg.norm(vol.affine[:3, :3], axis=0)
    assert np.allclose(np.abs(np.diag(directions)), 1) and directions[2, 2] > 0


def test_simulate_takes_a_dicom_folder_from_the_cli_and_keeps_its_affine(dicom_series, tmp_path):
    folder, _, _ = dicom_series
    out = tmp_path / "ct.h5"
    args = ["simulate", folder, "--operator", "ct-parallel", "-p", "views=16", "-o", out, "--noise-std", "0"]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    m = medrecon.load_bundle(out)
    assert m.ground_truth.shape == (SLICES, 128, 128)
    np.testing.assert_allclose(m.affine, medrecon.load_volume(folder).affine)


def test_nrrd_volumes_read_with_their_affine(tmp_path):
    import nrrd  # the test extra installs pynrrd, as "medrecon[nrrd]" does for users

    data = np.random.default_rng(0).random((20, 16, 12)).astype(np.float32)  # (i, j, k)
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.8, 0.9, 3.0]),
        "space origin": np.array([10.0, 20.0, 30.0]),
    }
    nrrd.write(str(tmp_path / "v.nrrd"), data, header)
    vol = medrecon.load_volume(tmp_path / "v.nrrd")
    np.testing.assert_allclose(vol.data, data.transpose(2, 1, 0))
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    expected = np.eye(4)
    expected[:3, :3], expected[:3, 3] = np.diag([0.8, 0.9, 3.0]), [10, 20, 30]
    np.testing.assert_allclose(vol.affine, lps_to_ras @ expected)


@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
def test_metaimage_volumes_read_with_their_affine(tmp_path, suffix):
    import itk  # the test extra installs itk-io, as "medrecon[itk]" does for users

    data = np.random.default_rng(0).random((7, 9, 11)).astype(np.float32)  # numpy (k, j, i)
    image = itk.image_from_array(data)
    image.SetSpacing([0.8, 0.9, 3.0])  # (i, j, k), in mm
    image.SetOrigin([10.0, 20.0, 30.0])  # LPS, as ITK writes patient coordinates
    itk.imwrite(image, str(tmp_path / f"v{suffix}"))
    vol = medrecon.load_volume(tmp_path / f"v{suffix}")
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)
    expected = np.diag([-0.8, -0.9, 3.0, 1.0])  # LPS turned to RAS: x and y flip sign
    expected[:3, 3] = [-10.0, -20.0, 30.0]
    np.testing.assert_allclose(vol.affine, expected)
    # and it goes through the CLI's simulate like any volume, its affine kept in the bundle
    out = tmp_path / "mri.h5"
    args = ["simulate", tmp_path / f"v{suffix}", "--operator", "mri-multicoil", "-p", "coils=2", "-o", out]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(medrecon.load_bundle(out).affine, expected)


def test_unknown_formats_and_missing_extras_are_named(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(medrecon.InputError, match=r"unknown format \(\.txt\); medrecon reads NIfTI"):
        medrecon.load_volume(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(medrecon.InputError, match="a folder with no DICOM files"):
        medrecon.load_volume(tmp_path / "empty")
    (tmp_path / "v.mha").write_bytes(b"ObjectType = Image\n")
    import builtins

    real_import = builtins.__import__

    def no_itk(name, *args, **kwargs):
        if name == "itk":
            raise ImportError("no itk")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_itk)
    with pytest.raises(
        medrecon.InputError, match=r"needs the 'itk' package: pip install \"medrecon\[itk\]\""
    ):
        medrecon.load_volume(tmp_path / "v.mha")


@pytest.mark.napari
def test_a_dicom_ct_series_opens_in_napari(make_napari_viewer, dicom_series):
    folder, hu, (row_mm, col_mm) = dicom_series
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(folder), plugin="medrecon")
    assert layer.data.shape == (SLICES, 128, 128) and layer.name == "ct_series"
    np.testing.assert_allclose(np.abs(np.diag(layer.affine.affine_matrix)[:3]), (THICKNESS, row_mm, col_mm))
