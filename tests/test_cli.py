"""The command line: plugins, simulate, reconstruct, demo; bad input exits 2 with a clear message."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medrecon.apps.cli import main


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def volume(tmp_path, phantom):
    path = tmp_path / "phantom.nii.gz"
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-12.0, 4.0, 30.0]
    nib.save(nib.Nifti1Image(phantom.transpose(2, 1, 0), affine), str(path))
    return path, affine


@pytest.fixture
def bundle(tmp_path, volume):
    out = tmp_path / "m.h5"
    run(
        "simulate",
        volume[0],
        "-o",
        out,
        "--operator",
        "mri-multicoil",
        "-p",
        "acceleration=4",
        "--noise-std",
        "0.001",
    )
    return out


def test_plugins_lists_the_builtins_with_their_distribution():
    out = run("plugins").output
    assert "mri-multicoil" in out and "cg" in out and "medrecon (mri)" in out
    data = json.loads(run("plugins", "--json").output)
    rows = {(c["kind"], c["name"]): c for c in data["components"]}
    assert rows[("operator", "mri-multicoil")]["distribution"] == "medrecon"
    assert rows[("sampler", "cg")]["requires"] == ["linear-operator", "no-prior"]


def test_describe_prints_parameters_with_types_and_defaults():
    out = run("plugins", "--describe", "cg").output
    assert "iterations" in out and "int" in out and "30" in out and "tikhonov" in out
    [rec] = json.loads(run("plugins", "--describe", "mri-multicoil", "--json").output)
    params = {p["name"]: p for p in rec["parameters"]}
    assert params["acceleration"] == {
        "name": "acceleration",
        "type": "float",
        "default": 4.0,
        "required": False,
    }
    bad = run("plugins", "--describe", "cgg", ok=False)
    assert bad.exit_code == 2 and "no component named 'cgg' (did you mean 'cg'?)" in bad.output


def test_simulate_then_reconstruct_writes_nifti_with_affine_and_sidecar(tmp_path, volume, bundle, phantom):
    path, affine = volume
    out = tmp_path / "recon.nii.gz"
    result = run(
        "reconstruct", bundle, "-o", out, "--sampler", "cg", "-p", "sampler.iterations=15", "--seed", "4"
    )
    assert "wrote" in result.output
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, affine)
    recon = img.get_fdata(dtype=np.float32).transpose(2, 1, 0)
    assert recon.shape == phantom.shape
    assert np.linalg.norm(recon - phantom) / np.linalg.norm(phantom) < 0.25
    side = json.loads((tmp_path / "recon.json").read_text())
    assert side["recipe"]["sampler"] == {"name": "cg", "iterations": 15}
    assert side["recipe"]["operator"]["name"] == "mri-multicoil"
    assert side["seed"] == 4 and side["nfe"] == 0 and side["seconds"] > 0 and side["device"] == "cpu"
    assert side["versions"]["sampler:cg"].startswith("medrecon ") and "torch" in side["versions"]


def test_reconstruct_with_a_toml_recipe(tmp_path, bundle):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[sampler]\nname = "cg"\niterations = 5\n')
    run("reconstruct", bundle, "-o", tmp_path / "r.nii.gz", "--recipe", recipe, "--quiet")
    assert json.loads((tmp_path / "r.json").read_text())["cg_iterations"] <= 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "cgg"], "no sampler named 'cgg' (did you mean 'cg'?)"),
        (
            ["--sampler", "cg", "-p", "sampler.iteratons=3"],
            "sampler 'cg' has no parameter 'iteratons' (did you mean 'iterations'?)",
        ),
        (["--sampler", "cg", "-p", "iterations=3"], "needs its section: operator.iterations=..."),
        (
            ["--sampler", "cg", "--device", "gpu"],
            "device 'gpu' is not valid: expected auto, cpu, cuda or cuda:N",
        ),
        ([], "the recipe has no [sampler] section"),
    ],
)
def test_bad_reconstruct_arguments_exit_2_with_a_message(tmp_path, bundle, args, message):
    out = tmp_path / "x.nii.gz"
    result = run("reconstruct", bundle, "-o", out, *args, ok=False)
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_output_equal_to_input_is_refused_and_input_kept(bundle):
    before = bundle.read_bytes()
    result = run("reconstruct", bundle, "-o", bundle, "--sampler", "cg", ok=False)
    assert result.exit_code == 2 and "inputs are never overwritten" in result.output
    assert bundle.read_bytes() == before


def test_simulate_rejects_a_file_that_is_not_nifti(tmp_path):
    fake = tmp_path / "scan.nii.gz"
    fake.write_bytes(b"\x1f\x8b not really gzip")
    result = run("simulate", fake, "-o", tmp_path / "m.h5", "--operator", "mri-multicoil", ok=False)
    assert result.exit_code == 2 and "could not be read as NIfTI" in result.output


def test_simulate_with_an_unknown_operator_parameter(tmp_path, volume):
    result = run(
        "simulate",
        volume[0],
        "-o",
        tmp_path / "m.h5",
        "--operator",
        "mri-multicoil",
        "-p",
        "accel=4",
        ok=False,
    )
    assert result.exit_code == 2
    assert (
        "operator 'mri-multicoil' has no parameter 'accel'" in result.output
        and "'acceleration'" in result.output
    )


def test_shape_mismatch_in_a_bundle_is_reported(tmp_path, bundle):
    import h5py

    with h5py.File(bundle, "r+") as f:
        del f["operator/mask"]
        f["operator"].create_dataset("mask", data=np.ones((32, 30), dtype=np.float32))
    result = run("reconstruct", bundle, "-o", tmp_path / "x.nii.gz", "--sampler", "cg", ok=False)
    assert result.exit_code == 2
    assert "mask shape (32, 30) does not match the image: expected (32, 32)" in result.output


def test_demo_quick_writes_figures_reconstructions_and_metrics(tmp_path):
    import nibabel as nib
    from PIL import Image

    from medrecon.apps.demo import demo_volume

    out = tmp_path / "demo"
    run("demo", "--out", out, "--quick", "--device", "cpu", "--case", "mri-8x", "--case", "deblur-motion")
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["method"] for r in rows] == [
        "zero-filled",
        "CG-SENSE",
        "sigpy TV",
        "DDS + TV-z",
        "TV, true kernel",
        "blind TV",
        "BlindDPS",
        "blind DDS",
    ]
    mri = {r["method"]: r for r in rows if r["case"] == "mri-8x"}
    assert mri["DDS + TV-z"]["nfe"] == 10 and mri["DDS + TV-z"]["psnr_db"] > mri["zero-filled"]["psnr_db"]
    blind = {r["method"]: r for r in rows if r["case"] == "deblur-motion"}
    assert blind["blind TV"]["kernel_rel_error"] < 1.0  # closer to the truth than no kernel at all
    assert blind["BlindDPS"]["psnr_db"] > 15  # 20 steps blew up (-33 dB) before x0 was clipped
    # 20 steps are a smoke test (blind DDS beats blind TV at the demo's 100): its kernel still moves
    # from its Gaussian start towards the true kernel
    from medrecon import load_bundle
    from medrecon.metrics import relative_error
    from medrecon_samplers.blind import gaussian_start

    true_kernel = load_bundle(out / "deblur-motion.h5").arrays["kernel"]
    start_error = relative_error(true_kernel, gaussian_start((9, 9), 3.0, "cpu").numpy())
    assert blind["blind DDS"]["nfe"] == 20 and blind["blind DDS"]["kernel_rel_error"] < start_error
    kernel = nib.load(str(out / "deblur-motion_blinddps_kernel.nii.gz")).get_fdata()
    assert (
        kernel.squeeze().shape == (9, 9) and kernel.min() >= 0 and kernel.sum() == pytest.approx(1, abs=1e-4)
    )
    assert (out / "metrics.md").read_text().startswith("| case | method | psnr_db | ssim | seconds | nfe |")
    for case in ("mri-8x", "deblur-motion"):
        with Image.open(out / f"{case}.png") as figure:
            assert figure.format == "PNG" and figure.width > 4 * figure.height
    _, affine = demo_volume(quick=True)
    written = nib.load(str(out / "mri-8x_dds-tv-z.nii.gz"))
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert written.shape == (197, 233, 2) and (out / "mri-8x_dds-tv-z.json").is_file()
    assert (out / "mri-8x_sigpy-tv.json").is_file()  # the external peer's output has its sidecar too


def test_demo_names_an_unknown_case(tmp_path):
    result = run("demo", "--out", tmp_path / "d", "--quick", "--case", "mri-16x", ok=False)
    assert result.exit_code == 2
    assert "unknown demo case(s) 'mri-16x'; choose from mri-4x, mri-8x, mri-8x-complex" in result.output


def test_the_installed_console_script_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "medrecon", "plugins", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert any(c["name"] == "mri-multicoil" for c in json.loads(proc.stdout)["components"])


def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback():
    import shutil
    import signal
    import time
    from pathlib import Path

    script = Path(sys.executable).parent / "medrecon"
    script = str(script) if script.exists() else shutil.which("medrecon")
    assert script, "the medrecon console script is not installed beside this Python"

    def default_sigint():  # a shell's background job inherits SIGINT ignored; a terminal's does not
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        [script, "plugins"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    time.sleep(0.4)  # inside the imports of torch and MONAI (about 1.6 s on 2 cores)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
