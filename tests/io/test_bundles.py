"""Files: NIfTI and bundles round-trip; bad files get clear errors; inputs are never overwritten."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest

from medrecon import InputError, load_bundle, load_nifti, save_bundle, save_nifti
from medrecon.io import atomic_path


@pytest.fixture
def nifti_file(tmp_path):
    data = np.random.default_rng(0).random((12, 10, 6)).astype(np.float32)  # (i, j, k)
    affine = np.array([[0.9, 0, 0, -10], [0, 1.1, 0, 5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    path = tmp_path / "vol.nii.gz"
    img = nib.Nifti1Image(data, affine)
    img.header["descrip"] = b"test volume"
    nib.save(img, str(path))
    return path, data, affine


def test_nifti_is_read_as_d_h_w_with_affine_and_spacing(nifti_file):
    path, data, affine = nifti_file
    vol = load_nifti(path)
    assert vol.data.shape == (6, 10, 12) and vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.affine, affine)
    assert vol.spacing == pytest.approx((2.5, 1.1, 0.9))


def test_nifti_round_trip_keeps_data_affine_and_header(nifti_file, tmp_path):
    path, data, affine = nifti_file
    vol = load_nifti(path)
    out = save_nifti(tmp_path / "out.nii.gz", vol.data, vol.affine, vol.header, inputs=(path,))
    img = nib.load(str(out))
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), data)
    np.testing.assert_allclose(img.affine, affine)
    assert img.header["descrip"].tobytes().rstrip(b"\0") == b"test volume"


def test_a_file_that_is_not_nifti_gets_a_clear_error(tmp_path):
    fake = tmp_path / "notes.nii"
    fake.write_text("this is not an image")
    with pytest.raises(InputError, match="could not be read as NIfTI.*damaged, truncated or not NIfTI"):
        load_nifti(fake)
    with pytest.raises(InputError, match="expected a name ending in .nii or .nii.gz"):
        load_nifti(tmp_path.joinpath("x.png").touch() or tmp_path / "x.png")
    with pytest.raises(InputError, match="no such NIfTI file"):
        load_nifti(tmp_path / "missing.nii.gz")


def test_a_truncated_nifti_gets_a_clear_error(nifti_file, tmp_path):
    path, _, _ = nifti_file
    raw = tmp_path / "raw.nii"
    nib.save(nib.load(str(path)), str(raw))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(raw.read_bytes()[:1000])
    with pytest.raises(InputError, match="cut.nii could not be read as NIfTI"):
        load_nifti(cut)


def test_output_equal_to_input_is_refused_and_the_input_is_untouched(nifti_file):
    path, _, _ = nifti_file
    before = path.read_bytes()
    with pytest.raises(InputError, match="is the input .*inputs are never overwritten"):
        save_nifti(path, np.zeros((2, 2, 2)), inputs=(path,))
    assert path.read_bytes() == before


def test_outputs_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        out = save_nifti(tmp_path / "o.nii.gz", np.zeros((2, 2, 2)))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_no_half_file(tmp_path):
    final = tmp_path / "result.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("cancelled")
    assert list(tmp_path.iterdir()) == []


def test_bundle_round_trip(tmp_path, mri_measurement):
    path = save_bundle(tmp_path / "m.h5", mri_measurement)
    back = load_bundle(path)
    np.testing.assert_array_equal(back.y, mri_measurement.y)
    assert back.y.dtype == np.complex64
    assert back.operator == mri_measurement.operator
    assert back.noise_std == 0.001
    for key in ("mask", "coil_maps"):
        np.testing.assert_array_equal(back.arrays[key], mri_measurement.arrays[key])
    np.testing.assert_array_equal(back.ground_truth, mri_measurement.ground_truth)


def test_bundle_without_y_or_operator_gets_a_clear_error(tmp_path):
    no_y = tmp_path / "no_y.h5"
    with h5py.File(no_y, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(InputError, match="has no dataset 'y' \\(the measurement\\); found \\['x'\\]"):
        load_bundle(no_y)
    no_op = tmp_path / "no_op.h5"
    with h5py.File(no_op, "w") as f:
        f.create_dataset("y", data=np.zeros(3, dtype=np.float32))
    with pytest.raises(InputError, match="has no 'operator' group naming its operator"):
        load_bundle(no_op)
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("hello")
    with pytest.raises(InputError, match="is not a readable HDF5 measurement bundle"):
        load_bundle(not_h5)


def test_bundle_with_nan_in_y_is_rejected(tmp_path, mri_measurement):
    path = save_bundle(tmp_path / "m.h5", mri_measurement)
    with h5py.File(path, "r+") as f:
        f["y"][0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"measurement y in .*m.h5 holds 1 NaN or Inf value\(s\)"):
        load_bundle(path)


def test_nifti_outputs_carry_their_affine_codes_and_mm_units(tmp_path):
    affine = np.diag([0.7, 0.7, 5.0, 1.0])
    affine[:3, 3] = [-10, -20, 3]
    save_nifti(tmp_path / "new.nii.gz", np.ones((3, 8, 9), np.float32), affine)
    header = nib.load(tmp_path / "new.nii.gz").header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 1)  # scanner anatomy
    assert header.get_xyzt_units()[0] == "mm"
    assert np.allclose(nib.load(tmp_path / "new.nii.gz").get_qform(), affine)
    # an input's codes (here MNI space, code 4) carry over to what is written from it
    mni = nib.Nifti1Image(np.ones((9, 8, 3), np.float32), affine)
    mni.set_qform(affine, code=4)
    mni.set_sform(affine, code=4)
    nib.save(mni, tmp_path / "mni.nii.gz")
    vol = load_nifti(tmp_path / "mni.nii.gz")
    save_nifti(tmp_path / "out.nii.gz", vol.data, vol.affine, vol.header)
    out = nib.load(tmp_path / "out.nii.gz").header
    assert (int(out["qform_code"]), int(out["sform_code"])) == (4, 4)
    save_nifti(tmp_path / "none.nii.gz", vol.data)  # no affine known: said so, code 0
    assert int(nib.load(tmp_path / "none.nii.gz").header["sform_code"]) == 0
