"""Every bad input of the probe is refused before the work, with the parameter or file named and
exit code 2, and no file written or lost."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

import medrecon
from medrecon.apps.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def bundle(tmp_path, mri_measurement):
    path = tmp_path / "m.h5"
    medrecon.save_bundle(path, mri_measurement)
    return path


def only(folder, *names):
    return sorted(p.name for p in folder.iterdir()) == sorted(names)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "cg", "-p", "sampler.tol=-1"], "cg: tol must be >= 0"),
        (
            ["--sampler", "dds", "--prior", "gaussian", "-p", "sampler.cg_iterations=0"],
            "dds: cg_iterations must be >= 1",
        ),
        (
            ["--sampler", "dds", "--prior", "gaussian", "-p", "sampler.tv_z=-1"],
            "dds: tv_z must be >= 0, got -1",
        ),
        (["--sampler", "cg", "--noise-std", "nan"], "noise_std must be a finite number >= 0"),
        (["--sampler", "cg", "-p", "operator.acceleration=8"], "operator parameter acceleration=8 differs"),
        (
            [
                "--sampler",
                "dds",
                "--prior",
                "diffusion",
                "-p",
                "prior.weights=brain-axial",
                "-p",
                "prior.data_range=[1, -1]",
            ],
            "data_range must be [low, high] with low < high",
        ),
    ],
    ids=["cg-tol", "dds-cg-iterations", "dds-tv-z", "noise-nan", "acceleration-override", "data-range"],
)
def test_bad_parameters_are_refused_by_name(bundle, tmp_path, args, message):
    result = run("reconstruct", bundle, "-o", tmp_path / "r.nii.gz", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert only(tmp_path, "m.h5")


def test_a_wrong_ground_truth_shape_is_blamed_on_the_ground_truth(bundle, tmp_path):
    with h5py.File(bundle, "r+") as f:
        del f["ground_truth"]
        f.create_dataset("ground_truth", data=np.zeros((8, 30, 32), dtype=np.float32))
    result = run("reconstruct", bundle, "-o", tmp_path / "r.nii.gz", "--sampler", "cg")
    assert result.exit_code == 2 and "ground_truth has shape (8, 30, 32)" in result.output
    assert "(8, 32, 32)" in result.output


def test_a_damaged_bundle_is_named(bundle, tmp_path):
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
    bundle.write_bytes(bytes(data))
    result = run("reconstruct", bundle, "-o", tmp_path / "r.nii.gz", "--sampler", "cg")
    assert result.exit_code == 2 and "m.h5" in result.output
    assert "damaged" in result.output or "not a readable HDF5" in result.output


def test_fastmri_files_are_complex_images_and_real_kspace_is_refused(tmp_path):
    good, bad = tmp_path / "good.h5", tmp_path / "bad.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("kspace", data=np.ones((2, 4, 16, 16), dtype=np.complex64))
    with h5py.File(bad, "w") as f:
        f.create_dataset("kspace", data=np.ones((2, 4, 16, 16), dtype=np.float32))
    assert medrecon.load_bundle(good).operator.params["complex_image"] is True
    with pytest.raises(medrecon.InputError, match="'kspace' is float32, real-valued"):
        medrecon.load_bundle(bad)


def test_truncated_prior_weights_are_named(tmp_path):
    from medrecon_priors.network import SHIPPED

    card = (SHIPPED / "brain-axial.json").read_text()
    (tmp_path / "w.json").write_text(card.replace("brain-axial.safetensors", "w.safetensors"))
    (tmp_path / "w.safetensors").write_bytes((SHIPPED / "brain-axial.safetensors").read_bytes()[:1000])
    with pytest.raises(
        medrecon.InputError, match=r"w.safetensors could not be read: the file is damaged or truncated"
    ):
        medrecon.build_component(
            "prior", medrecon.ComponentRecipe("diffusion", {"weights": str(tmp_path / "w.json")})
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    ],
)
def test_train_prior_refuses_impossible_options(tmp_path, args, message):
    volume = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), dtype=np.float32), np.eye(4)), str(volume))
    result = run("train-prior", volume, "-o", tmp_path / "p", *args)
    assert result.exit_code == 2 and message in result.output
    assert only(tmp_path, "v.nii.gz")


def test_train_prior_on_a_missing_folder_names_it(tmp_path):
    result = run("train-prior", tmp_path / "nowhere", "-o", tmp_path / "p")
    assert result.exit_code == 2 and "nowhere does not exist" in result.output


def test_an_unreachable_acceleration_is_said(host, caplog):
    m = medrecon.simulate(
        np.ones((2, 64, 64), np.float32),
        {"name": "mri-multicoil", "acceleration": 100},
        noise_std=0.0,
        host=host,
    )
    note = m.attrs["simulation"]["operator"]["acceleration_note"]
    assert "acceleration 100 was asked for" in note and "is realised" in note
    assert "acceleration 100 was asked for" in caplog.text


def test_the_python_api_names_wrong_types(host, mri_measurement):
    # a string is a volume file's path (NIfTI, DICOM folder ...): a missing one is named
    with pytest.raises(medrecon.InputError, match="no such volume: brain.nii.gz"):
        medrecon.simulate("brain.nii.gz", {"name": "mri-multicoil"}, noise_std=0.0, host=host)
    with pytest.raises(medrecon.InputError, match="volume must be a numeric array"):
        medrecon.simulate(np.array(["a", "b"]), {"name": "mri-multicoil"}, noise_std=0.0, host=host)
    volume = np.ones((2, 16, 16), np.float32)
    for bad in ("abc", None):
        with pytest.raises(medrecon.InputError, match="noise_std must be a finite number >= 0"):
            medrecon.simulate(volume, {"name": "mri-multicoil"}, noise_std=bad, host=host)
    with pytest.raises(medrecon.InputError, match="seed must be an integer, got 'x'"):
        medrecon.simulate(volume, {"name": "mri-multicoil"}, noise_std=0.0, seed="x", host=host)
    with pytest.raises(medrecon.InputError, match="seed must be an integer, got 'abc'"):
        medrecon.reconstruct({"sampler": {"name": "cg"}}, mri_measurement, seed="abc", host=host)
    complex_volume = np.ones((2, 16, 16), np.complex64)
    with pytest.raises(medrecon.InputError, match="the volume is complex.*imaginary part would be lost"):
        medrecon.simulate(complex_volume, {"name": "mri-multicoil"}, noise_std=0.0, host=host)
    kept = medrecon.simulate(
        complex_volume, {"name": "mri-multicoil", "complex_image": True}, noise_std=0.0, host=host
    )
    assert np.iscomplexobj(kept.ground_truth)
    as_list = medrecon.simulate(
        np.ones((2, 16, 16)).tolist(), {"name": "mri-multicoil"}, noise_std=0.0, host=host
    )
    assert as_list.ground_truth.dtype == np.float32  # float64 lists are taken as float32 images
    with pytest.raises(medrecon.InputError, match="takes a medrecon.Measurement.*got ndarray"):
        medrecon.reconstruct({"sampler": {"name": "cg"}}, mri_measurement.y, host=host)


def test_a_nifti_header_claiming_a_huge_volume_says_its_size(tmp_path):
    path = tmp_path / "huge.nii"
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    with open(path, "wb") as fh:
        fh.write(header.binaryblock + b"\x00" * 4)
    with pytest.raises(
        medrecon.InputError, match=r"declares a volume of 30000 x 30000 x 30000 voxels, 100\d+\.\d GiB"
    ):
        medrecon.load_nifti(path)


def test_demo_refuses_a_bad_device_and_a_used_folder_before_writing(tmp_path):
    result = run("demo", "--out", tmp_path / "d", "--quick", "--device", "banana")
    assert result.exit_code == 2 and "device 'banana' is not valid" in result.output
    assert not (tmp_path / "d").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "metrics.md").write_text("an earlier run")
    result = run("demo", "--out", tmp_path / "used", "--quick")
    assert (
        result.exit_code == 2
        and "is not empty (1 files); choose a new folder or give --overwrite" in result.output
    )
    assert (tmp_path / "used" / "metrics.md").read_text() == "an earlier run"


def _params_as_number(f):
    f["operator"].attrs["params"] = np.int64(3)


def _params_not_json(f):
    f["operator"].attrs["params"] = "coils=8"


def _noise_as_text(f):
    f.attrs["noise_std"] = "low"


def _y_as_group(f):
    del f["y"]
    f.create_group("y")


def _array_as_group(f):
    del f["operator/mask"]
    f["operator"].create_group("mask")


def _attr_not_json(f):
    f.attrs["simulation"] = "{seed: 3"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_params_as_number, "operator attribute 'params' must be JSON text"),
        (_params_not_json, "operator attribute 'params' is not valid JSON"),
        (_noise_as_text, "attribute 'noise_std' must be a number"),
        (_y_as_group, "'y' must be a numeric dataset, but it is an HDF5 group"),
        (_array_as_group, "operator array 'mask' must be a numeric dataset"),
        (_attr_not_json, "attribute 'simulation' is not valid JSON"),
    ],
    ids=["params-number", "params-not-json", "noise-text", "y-group", "array-group", "attr-not-json"],
)
def test_bundles_written_by_other_tools_get_clear_errors(bundle, tmp_path, damage, message):
    with h5py.File(bundle, "r+") as f:
        damage(f)
    result = run("reconstruct", bundle, "-o", tmp_path / "r.nii.gz", "--sampler", "cg")
    assert result.exit_code == 2, result.output
    assert message in result.output and "m.h5" in result.output
    assert only(tmp_path, "m.h5")


def test_an_operator_setting_left_at_its_default_cannot_be_changed_either(tmp_path, host):
    """A bundle simulated at the default 4x (not stored explicitly) refuses -p operator.acceleration=8
    like one simulated with an explicit 4x; how CT is computed (its projector) may still change."""
    truth = np.random.default_rng(0).random((2, 32, 32), dtype=np.float32)
    mri = medrecon.save_bundle(
        tmp_path / "mri.h5", medrecon.simulate(truth, {"name": "mri-multicoil"}, noise_std=0.01)
    )
    result = run(
        "reconstruct", mri, "-o", tmp_path / "r.nii.gz", "--sampler", "cg", "-p", "operator.acceleration=8"
    )
    assert (
        result.exit_code == 2
        and "acceleration=8 differs from the measurement's acceleration=4.0" in result.output
    )
    ct = medrecon.save_bundle(
        tmp_path / "ct.h5", medrecon.simulate(truth, {"name": "ct-parallel", "views": 8}, noise_std=0.01)
    )
    result = run(
        "reconstruct",
        ct,
        "-o",
        tmp_path / "c.nii.gz",
        "--sampler",
        "fbp",
        "-p",
        "operator.projector=matrix-free",
    )
    assert result.exit_code == 0, result.output


def test_simulate_never_replaces_a_bundle_unasked_and_complex_files_are_refused(tmp_path):
    volume = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 2), np.float32), np.eye(4)), volume)
    out = tmp_path / "m.h5"
    args = ["simulate", volume, "-o", out, "--operator", "ct-parallel", "-p", "views=4"]
    assert run(*args).exit_code == 0
    before = out.read_bytes()
    second = run(*args[:-2], "-p", "views=8")
    assert (
        second.exit_code == 2 and "exists; give --overwrite" in second.output and out.read_bytes() == before
    )
    assert run(*args, "--overwrite").exit_code == 0
    wrong = run("simulate", volume, "-o", tmp_path / "m2.nii.gz", "--operator", "ct-parallel")
    assert wrong.exit_code == 2 and "e.g. " + str(tmp_path / "m2.h5") in wrong.output
    complex_volume = tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 2), np.complex64), np.eye(4)), complex_volume)
    refused = run("simulate", complex_volume, "-o", tmp_path / "c.h5", "--operator", "ct-parallel")
    assert refused.exit_code == 2 and "holds complex voxels" in refused.output
    assert not (tmp_path / "c.h5").exists()
