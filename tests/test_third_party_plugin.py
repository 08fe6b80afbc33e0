"""A real third-party distribution, installed with pip, found through entry points, listed and run.

The distribution lives in tests/plugin_dists/medrecon-example. It is installed into a throwaway
virtual environment that sees this environment's packages (medrecon included), so the running
environment is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

DIST = Path(__file__).parent / "plugin_dists" / "medrecon-example"


@pytest.fixture(scope="module")
def env_python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("thirdparty")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    # The throwaway venv sees the running environment's packages (medrecon, torch ...), whether that
    # is the system Python or a user's virtual environment: system_site_packages would only reach the
    # base interpreter's, which in a venv lacks everything the project installed.
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = dict.fromkeys(
        [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    )
    # addsitedir (not a bare path line) so that the parent's own .pth files, such as an editable
    # install's, are processed too
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in ours)
    (Path(purelib) / "_medrecon_parent_env.pth").write_text(lines)
    source, wheels = root / "src", root / "wheels"
    shutil.copytree(DIST, source)  # build outside the repository: no build/ or egg-info left there
    # Build the wheel with this interpreter's setuptools (the venv's bundled one may be too old),
    # then install it into the venv as a user would: pip install.
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip_wheel, "-w", str(wheels), str(source)], check=True, capture_output=True)
    [wheel] = wheels.glob("medrecon_example-*.whl")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True
    )
    return python


def medrecon_cli(python: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "medrecon", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_plugins_lists_the_third_party_components_and_its_broken_entry_point(env_python):
    proc = medrecon_cli(env_python, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {c["name"]: c for c in data["components"]}
    assert rows["pixel-binning"]["kind"] == "operator" and rows["landweber"]["kind"] == "sampler"
    assert (
        rows["pixel-binning"]["distribution"] == "medrecon-example"
        and rows["pixel-binning"]["version"] == "1.2.3"
    )
    assert not rows["pixel-binning"]["builtin"] and rows["mri-multicoil"]["builtin"]
    [failed] = data["failed"]
    assert failed["plugin"] == "example-broken" and failed["distribution"] == "medrecon-example"
    assert "No module named 'medrecon_example_missing_dependency'" in failed["error"]
    assert "skipped" in proc.stderr  # the warning a user sees

    table = medrecon_cli(env_python, "plugins").stdout
    assert "pixel-binning" in table and "failed plugins" in table and "example-broken" in table


def test_the_third_party_operator_and_sampler_run_end_to_end(env_python, tmp_path, phantom):
    volume = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(phantom.transpose(2, 1, 0), np.eye(4)), str(volume))
    bundle, out = tmp_path / "m.h5", tmp_path / "r.nii.gz"
    sim = medrecon_cli(
        env_python, "simulate", volume, "-o", bundle, "--operator", "pixel-binning", "--noise-std", "0.01"
    )
    assert sim.returncode == 0, sim.stderr
    rec = medrecon_cli(env_python, "reconstruct", bundle, "-o", out, "--sampler", "landweber", "--quiet")
    assert rec.returncode == 0, rec.stderr
    recon = nib.load(str(out)).get_fdata().transpose(2, 1, 0)
    assert recon.shape == phantom.shape
    side = json.loads(out.with_name("r.json").read_text())
    assert side["versions"]["sampler:landweber"] == "medrecon-example 1.2.3"


def test_a_third_party_reader_brings_its_own_file_format_to_reconstruct(env_python, tmp_path, phantom):
    binned = phantom.reshape(8, 16, 2, 16, 2).mean(axis=(2, 4))  # the lab's files: 2 x 2 binned
    source, out = tmp_path / "scan.npz", tmp_path / "r.nii.gz"
    np.savez(source, binned=binned, noise_std=0.0)
    listed = {
        c["name"]: c["kind"]
        for c in json.loads(medrecon_cli(env_python, "plugins", "--json").stdout)["components"]
    }
    assert listed["binned-npz"] == "reader"
    args = ["reconstruct", source, "-r", "factor=2", "--sampler", "landweber", "-o", out, "--quiet"]
    rec = medrecon_cli(env_python, *args)
    assert rec.returncode == 0, rec.stderr
    assert nib.load(str(out)).shape == (32, 32, 8)  # the image grid the reader said: 2x the binned one
    side = json.loads(out.with_name("r.json").read_text())
    assert side["recipe"]["operator"]["name"] == "pixel-binning"
    bad = medrecon_cli(
        env_python, "reconstruct", source, "-r", "factr=2", "--sampler", "landweber", "-o", out
    )
    assert bad.returncode == 2 and "reader 'binned-npz' has no parameter 'factr'" in bad.stderr


def test_disabling_and_no_plugins_hide_the_third_party_plugin(env_python):
    disabled = medrecon_cli(
        env_python, "plugins", "--json", env={"MEDRECON_DISABLE_PLUGINS": "example,example-broken"}
    )
    names = {c["name"] for c in json.loads(disabled.stdout)["components"]}
    assert "pixel-binning" not in names and "mri-multicoil" in names
    assert json.loads(disabled.stdout)["failed"] == []
    builtins = medrecon_cli(env_python, "--no-plugins", "plugins", "--json")
    data = json.loads(builtins.stdout)
    assert {c["distribution"] for c in data["components"]} == {"medrecon"} and data["failed"] == []


def test_the_running_environment_was_not_changed():
    from importlib.metadata import PackageNotFoundError, distribution

    with pytest.raises(PackageNotFoundError):
        distribution("medrecon-example")
    assert sys.prefix != str(Path(__file__).parent)
