"""fastMRI multi-coil files end to end, on a file with the dataset's exact layout (640 x 368
encoded k-space, ISMRMRD header, 320 x 320 reconstruction_rss): header, readout oversampling,
recon-matrix crop, ground truth, noise estimate, retrospective undersampling, metrics."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import medrecon
from medrecon.apps.cli import main
from medrecon.numerics import ifftnc
from medrecon_mri import fastmri_metrics, undersample
from medrecon_mri.fastmri import remove_readout_oversampling
from tests.helpers import write_fastmri_file

NOISE = 0.01


@pytest.fixture(scope="module")
def fastmri_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fastmri") / "file_brain_AXT2_200_2000019.h5"
    write_fastmri_file(path, slices=1, coils=4, noise_std=NOISE, seed=1)
    return path


def test_a_fastmri_file_is_read_in_the_datasets_conventions(fastmri_file):
    m = medrecon.load_bundle(fastmri_file)  # by the MRI plugin's reader: the core knows no fastMRI
    assert m.attrs["reader"] == "fastmri"
    assert m.y.shape == (1, 4, 320, 368)  # readout oversampling (640) removed, phase encode kept
    assert m.crop == (320, 320) and m.ground_truth.shape == (1, 320, 320)
    assert np.allclose(np.linalg.norm(m.affine[:3, :3], axis=0), [0.6875, 0.6875, 5.0])
    assert np.allclose(m.affine[:3, :3] @ [159.5, 159.5, 0] + m.affine[:3, 3], 0)  # centred
    assert m.noise_std == pytest.approx(NOISE, rel=0.1)
    assert "estimated from the k-space periphery" in m.attrs["noise_std_source"]
    assert "no slice orientation" in m.attrs["orientation"]
    assert m.attrs["fastmri"]["acquisition"] == "AXT2"


def test_removing_readout_oversampling_keeps_the_image_values():
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 3, 40, 12)) + 1j * rng.standard_normal((2, 3, 40, 12))).astype(np.complex64)
    full = ifftnc(torch.as_tensor(k), (-2, -1)).numpy()
    cut = ifftnc(torch.as_tensor(remove_readout_oversampling(k, 20)), (-2, -1)).numpy()
    np.testing.assert_allclose(cut, full[..., 10:30, :], atol=1e-5)


def test_fully_sampled_files_are_undersampled_retrospectively_and_the_input_is_kept(fastmri_file):
    m = medrecon.load_bundle(fastmri_file)
    before = m.y.copy()
    u = undersample(m, 4)
    np.testing.assert_array_equal(m.y, before)
    columns = np.abs(u.y).sum(axis=(0, 1, 2)) > 0
    assert 3.8 < 368 / columns.sum() < 4.2 and u.attrs["undersampled"]["center_fraction"] == 0.08
    assert columns[368 // 2 - 10 : 368 // 2 + 10].all()  # the calibration centre is kept
    with pytest.raises(medrecon.InputError, match="already undersampled"):
        undersample(u, 2)


def test_the_cli_reconstructs_a_fastmri_file_on_its_recon_grid_with_its_metrics(fastmri_file, tmp_path):
    out = tmp_path / "recon.nii.gz"
    args = [
        "reconstruct",
        fastmri_file,
        "--read-option",
        "acceleration=4",
        "--sampler",
        "cg",
        "-p",
        "sampler.iterations=10",
    ]
    args += ["-o", out, "--quiet"]  # (early-stopped CG-SENSE: 4 coils at 4x amplify noise)
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    img = nib.load(out)
    assert img.shape == (320, 320, 1)
    assert np.allclose(img.header.get_zooms(), (0.6875, 0.6875, 5.0))
    assert int(img.header["qform_code"]) == 1 and img.header.get_xyzt_units()[0] == "mm"
    info = json.loads(out.with_name("recon.json").read_text())
    assert info["undersampled"]["acceleration_requested"] == 4.0
    assert 3.8 < info["operator"]["acceleration_realised"] < 4.2
    assert info["noise_std"] == pytest.approx(NOISE, rel=0.1) and "noise_std_source" in info
    # scored against reconstruction_rss, in medrecon's and in fastMRI's conventions: CG-SENSE
    # beats the zero-filled image in both
    zero_filled = medrecon.reconstruct(
        {"sampler": {"name": "adjoint"}}, undersample(medrecon.load_bundle(fastmri_file), 4)
    ).info
    for convention in ("metrics", "metrics_fastmri"):
        assert info[convention]["psnr_db"] > zero_filled[convention]["psnr_db"] + 1.0
    assert 0 < info["metrics_fastmri"]["nmse"] < zero_filled["metrics_fastmri"]["nmse"]


def test_fastmri_metrics_follow_the_datasets_evaluate_script():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    gt = rng.random((3, 40, 36)).astype(np.float32) + 0.5
    gt[:, 10:30, 8:28] += 2
    pred = gt + 0.2 * rng.standard_normal(gt.shape).astype(np.float32)
    scores = fastmri_metrics(gt, pred)
    peak = gt.max()  # fastMRI: data range = max, SSIM per slice (7 x 7), over the volume
    ssim = np.mean([structural_similarity(gt[i], pred[i], data_range=peak) for i in range(3)])
    assert scores["psnr_db"] == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=peak), abs=1e-2)
    assert scores["ssim"] == pytest.approx(ssim, abs=1e-3)


def test_a_header_that_disagrees_with_the_kspace_is_named(tmp_path):
    path = tmp_path / "f.h5"
    write_fastmri_file(path, slices=1, coils=2, encoded=(64, 40), recon=(32, 32), noise_std=NOISE)
    with h5py.File(path, "r+") as f:
        k = f["kspace"][()]
        del f["kspace"]
        f.create_dataset("kspace", data=k[..., :36])
    with pytest.raises(
        medrecon.InputError, match="k-space is 64 x 36 but the header's encoded matrix is 64 x 40"
    ):
        medrecon.load_bundle(path)
    with h5py.File(path, "r+") as f:
        del f["ismrmrd_header"]
        f.create_dataset("ismrmrd_header", data=b"<ismrmrdHeader><encoding>")
    with pytest.raises(medrecon.InputError, match="ismrmrd_header is not valid XML"):
        medrecon.load_bundle(path)


def test_reader_options_undersample_on_reading_and_bad_ones_are_named(fastmri_file):
    u = medrecon.load_bundle(fastmri_file, options={"acceleration": 4})
    assert u.attrs["reader"] == "fastmri" and u.attrs["undersampled"]["acceleration_requested"] == 4.0
    with pytest.raises(
        medrecon.InputError,
        match="reader 'fastmri' has no parameter 'accel'; valid parameters: 'acceleration'",
    ):
        medrecon.load_bundle(fastmri_file, options={"accel": 4})
    with pytest.raises(medrecon.InputError, match="mask_type: options of retrospective undersampling"):
        medrecon.load_bundle(fastmri_file, options={"mask_type": "random"})
    with pytest.raises(medrecon.InputError, match="acceleration must be a number > 1, got 0.5"):
        medrecon.load_bundle(fastmri_file, options={"acceleration": 0.5})
    with pytest.raises(medrecon.InputError, match="undersample takes a medrecon.Measurement.*got ndarray"):
        undersample(np.ones((2, 16, 16), np.float32), 4)


def test_a_medrecon_bundle_refuses_reader_options_and_other_files_name_the_readers(tmp_path):
    bundle = medrecon.simulate(
        np.ones((1, 16, 16), np.float32), {"name": "mri-multicoil", "coils": 2}, noise_std=0
    )
    path = medrecon.save_bundle(tmp_path / "b.h5", bundle)
    with pytest.raises(medrecon.InputError, match="is not a file the 'fastmri' reader takes"):
        medrecon.load_bundle(path, reader="fastmri")
    with pytest.raises(medrecon.InputError, match="is a medrecon bundle: reader options \\(acceleration\\)"):
        medrecon.load_bundle(path, options={"acceleration": 4})
    other = tmp_path / "notes.h5"
    other.write_text("not HDF5")
    with pytest.raises(
        medrecon.InputError, match="not a readable HDF5.*nor does an installed reader.*'fastmri'"
    ):
        medrecon.load_bundle(other)


def test_fastmri_multicoil_kspace_is_read(tmp_path, mri_measurement):
    path = tmp_path / "file_brain_AXT2_0.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=mri_measurement.y)
        f.attrs["acquisition"] = "AXT2"
    m = medrecon.load_bundle(path)
    assert m.operator.name == "mri-multicoil" and m.noise_std > 0  # estimated: none is stored
    assert "k-space periphery" in m.attrs["noise_std_source"]
    assert m.y.shape == mri_measurement.y.shape and m.y.dtype == np.complex64
    np.testing.assert_array_equal(m.arrays["mask"], mri_measurement.arrays["mask"])
    assert m.attrs["fastmri"]["acquisition"] == "AXT2"


def test_fastmri_kspace_reconstructs_with_espirit_maps(tmp_path, phantom, host):
    """A fastMRI file has no coil maps: ESPIRiT estimates them from the fully sampled centre."""
    from medrecon.metrics import psnr

    op = {"name": "mri-multicoil", "acceleration": 3, "center_fraction": 0.25}
    m = medrecon.simulate(phantom, op, noise_std=0.001, seed=3, host=host)
    path = tmp_path / "fastmri.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=m.y)
    fm = medrecon.load_bundle(path)
    estimated = medrecon.reconstruct({"sampler": {"name": "adjoint"}}, fm, host=host)
    assert "k-space periphery" in estimated.info["noise_std_source"]  # said where it came from
    recipe = {"operator": {"name": "mri-multicoil", "complex_image": True}, "sampler": {"name": "cg"}}
    espirit = medrecon.reconstruct(recipe, fm, noise_std=0.001, host=host, device="cpu")
    known_maps = medrecon.reconstruct({"sampler": {"name": "cg"}}, m, host=host, device="cpu")
    zero_filled = medrecon.reconstruct({"sampler": {"name": "adjoint"}}, m, host=host, device="cpu")
    assert espirit.image.shape == phantom.shape
    quality = psnr(phantom, np.abs(espirit.image.numpy()))
    assert quality > psnr(phantom, known_maps.image.numpy()) - 1.0
    assert quality > psnr(phantom, zero_filled.image.numpy()) + 5.0


def test_fastmri_kspace_with_too_few_calibration_lines_gets_a_clear_error(tmp_path, mri_measurement, host):
    path = tmp_path / "fastmri.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=mri_measurement.y)  # 8% of 32 columns: 3 centre lines
    with pytest.raises(
        medrecon.InputError, match="ESPIRiT needs at least 8 fully sampled centre lines, the mask has 3"
    ):
        medrecon.reconstruct(
            {"sampler": {"name": "cg"}}, medrecon.load_bundle(path), noise_std=0.001, host=host
        )
