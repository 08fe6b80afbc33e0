"""`medrecon batch`: cohorts on Dask (a LocalCluster of 2 workers here, and a cluster started apart)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

import medrecon
from medrecon.apps.cli import main
from medrecon.cohort import batch, collect_items
from medrecon.errors import InputError
from medrecon.samples import phantom_volume

RECIPE = {"sampler": {"name": "cg", "iterations": 8}}


def write_ct_bundles(folder, count: int, shape, *, views: int, noise_std: float) -> None:
    folder.mkdir()
    for i in range(count):
        truth = phantom_volume(shape)
        m = medrecon.simulate(truth, {"name": "ct-parallel", "views": views}, noise_std=noise_std, seed=i)
        medrecon.save_bundle(folder / f"case{i}.h5", m)


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def start_scheduler(scheduler_file) -> tuple[subprocess.Popen, str]:
    """A `dask scheduler` process on 127.0.0.1 and its address, once it wrote its file."""
    process = _start(
        "from distributed.cli.dask_scheduler import main; main()",
        *("--scheduler-file", str(scheduler_file), "--port", "0", "--dashboard-address", ":0"),
    )
    deadline = time.time() + 60
    while not scheduler_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    return process, json.loads(scheduler_file.read_text())["address"]


def start_worker(scheduler_file, *options: str) -> subprocess.Popen:
    """A `dask worker` process with one thread, joining the scheduler of `scheduler_file`."""
    return _start(
        "from distributed.cli.dask_worker import main; main()",
        *("--scheduler-file", str(scheduler_file), "--nthreads", "1", *options),
    )


@pytest.fixture
def cohort(tmp_path):
    """Three small CT bundles (odd in-plane size) and one file that is not a bundle."""
    folder = tmp_path / "in"
    write_ct_bundles(folder, 3, (2, 24, 21), views=12, noise_std=0.02)
    (folder / "broken.h5").write_bytes(b"not an HDF5 file")
    return folder


def test_inputs_come_from_folders_globs_and_manifests_each_name_once(cohort, tmp_path):
    assert [i.name for i in collect_items([cohort])] == ["broken", "case0", "case1", "case2"]
    assert [i.name for i in collect_items([str(cohort / "case*.h5")])] == ["case0", "case1", "case2"]
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("path,name,seed,noise_std\nin/case0.h5,first,7,\nin/case1.h5,,,0.1\n")
    first, second = collect_items([manifest])
    assert (first.name, first.seed, first.noise_std) == ("first", 7, None)
    assert (second.name, second.seed, second.noise_std) == ("case1", None, 0.1)
    assert first.path == str(cohort / "case0.h5")
    with pytest.raises(InputError, match="would write the same output 'case0'"):
        collect_items([cohort / "case0.h5", str(cohort / "case0*")])
    with pytest.raises(InputError, match="does not exist"):
        collect_items([tmp_path / "missing.h5"])
    with pytest.raises(InputError, match="could not reach a Dask scheduler"):
        batch(
            [cohort / "case0.h5"], RECIPE, tmp_path / "out", scheduler="tcp://127.0.0.1:9", connect_timeout=2
        )
    manifest.write_text("file\nin/case0.h5\n")
    with pytest.raises(InputError, match="needs a 'path' column"):
        collect_items([manifest])


def test_a_local_cluster_reconstructs_the_cohort_records_failures_and_resumes(cohort, tmp_path):
    out = tmp_path / "out"
    rows = {r["item"]: r for r in batch([cohort], RECIPE, out, workers=2)}
    assert {name: r["status"] for name, r in rows.items()} == {
        "broken": "failed",
        "case0": "done",
        "case1": "done",
        "case2": "done",
    }
    assert "not a readable HDF5" in rows["broken"]["error"]  # recorded; the batch went on
    assert {rows[f"case{i}"]["worker"] for i in range(3)} <= {"0", "1"}
    for i in range(3):  # exactly what `medrecon reconstruct` gives for the same bundle and seed
        expected = medrecon.reconstruct(RECIPE, medrecon.load_bundle(cohort / f"case{i}.h5"), device="cpu")
        written = nib.load(str(out / f"case{i}.nii.gz")).get_fdata(dtype=np.float32).transpose(2, 1, 0)
        np.testing.assert_allclose(written, expected.image.numpy(), rtol=1e-5, atol=1e-6)
        assert rows[f"case{i}"]["psnr_db"] > 15 and rows[f"case{i}"]["device"] == "cpu"
        sidecar = json.loads((out / f"case{i}.json").read_text())
        assert sidecar["batch"]["item"] == f"case{i}" and sidecar["recipe"]["sampler"]["iterations"] == 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(r["item"] for r in manifest) == sorted(rows)
    assert (out / "manifest.csv").read_text().splitlines()[0].startswith("item,input,status,seconds")
    assert not list(out.glob(".*"))  # no staged or half-written files

    # the same command again after one output was deleted: that item is redone, the finished ones are
    # skipped and left untouched, the failed one is tried again
    stamp = (out / "case0.nii.gz").stat().st_mtime_ns
    (out / "case1.nii.gz").unlink()
    again = {r["item"]: r["status"] for r in batch([cohort], RECIPE, out, workers=2)}
    assert again == {
        "broken": "failed",
        "case0": "skipped (done)",
        "case1": "done",
        "case2": "skipped (done)",
    }
    assert (out / "case1.nii.gz").is_file()
    assert (out / "case0.nii.gz").stat().st_mtime_ns == stamp
    # another recipe (or --force) redoes them
    other = {"sampler": {"name": "cg", "iterations": 4}}
    plan = batch([cohort], other, out, dry_run=True)
    assert [r["status"] for r in plan] == ["would run"] * 4
    assert [r["status"] for r in batch([cohort], RECIPE, out, dry_run=True)][1:] == ["would skip (done)"] * 3
    forced = batch([str(cohort / "case0.h5")], RECIPE, out, workers=1, force=True)
    assert forced[0]["status"] == "done" and (out / "case0.nii.gz").stat().st_mtime_ns != stamp


def test_volumes_are_simulated_with_the_recipes_operator_and_manifest_overrides(tmp_path):
    affine = np.diag([0.9, 0.9, 2.0, 1.0])
    for i in range(2):
        nib.save(
            nib.Nifti1Image(phantom_volume((2, 20, 23)).transpose(2, 1, 0), affine),
            str(tmp_path / f"v{i}.nii.gz"),
        )
    (tmp_path / "study.csv").write_text("path,seed,noise_std\nv0.nii.gz,3,0.01\nv1.nii.gz,3,0.2\n")
    recipe = {"operator": {"name": "mri-multicoil", "acceleration": 2.0}, "sampler": {"name": "cg"}}
    rows = {
        r["item"]: r for r in medrecon.batch([tmp_path / "study.csv"], recipe, tmp_path / "out", workers=1)
    }
    assert rows["v0"]["status"] == rows["v1"]["status"] == "done"
    assert rows["v0"]["psnr_db"] > rows["v1"]["psnr_db"] + 3  # each row's own noise level was used
    written = nib.load(str(tmp_path / "out" / "v0.nii.gz"))
    np.testing.assert_allclose(written.affine, affine)  # placed as its source
    # a recipe without an operator cannot simulate: recorded per item
    failed = batch([tmp_path / "v0.nii.gz"], {"sampler": {"name": "cg"}}, tmp_path / "out2", workers=1)
    assert failed[0]["status"] == "failed" and "needs an [operator]" in failed[0]["error"]
    # from a shell, the operator is named with --simulate and tuned with -p operator.*
    args = ["batch", str(tmp_path / "v0.nii.gz"), "--simulate", "mri-multicoil", "-p", "operator.coils=4"]
    args += ["--sampler", "cg", "--noise-std", "0.01", "-o", str(tmp_path / "out3"), "--workers", "1"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out3" / "v0.json").read_text())
    assert info["recipe"]["operator"]["name"] == "mri-multicoil" and info["operator"]["coils"] == 4


def test_a_mixed_cohort_simulates_volumes_and_runs_bundles_on_their_own_operator(cohort, tmp_path):
    volume = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(phantom_volume((2, 16, 16)).transpose(2, 1, 0), np.eye(4)), str(volume))
    recipe = {"operator": {"name": "inpainting", "missing": 0.5}, "sampler": {"name": "cg", "iterations": 5}}
    rows = {r["item"]: r for r in batch([volume, cohort / "case0.h5"], recipe, tmp_path / "out", workers=1)}
    assert rows["v"]["status"] == rows["case0"]["status"] == "done", rows
    info = json.loads((tmp_path / "out" / "case0.json").read_text())
    assert info["recipe"]["operator"]["name"] != "inpainting"  # the bundle's own operator


def test_the_command_runs_on_a_cluster_started_apart_and_exits_1_on_a_failed_item(cohort, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    scheduler, address = start_scheduler(scheduler_file)
    worker = None
    try:
        worker = start_worker(scheduler_file, "--nworkers", "1")
        result = CliRunner().invoke(
            main,
            [
                "batch",
                str(cohort),
                "--sampler",
                "cg",
                "-p",
                "sampler.iterations=8",
                "-o",
                str(tmp_path / "out"),
                "--scheduler",
                address,
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 1, result.output  # one item failed; the others are written
        assert "broken" in result.output and "failed" in result.output
        statuses = {
            r["item"]: r["status"] for r in json.loads((tmp_path / "out" / "manifest.json").read_text())
        }
        assert statuses == {"broken": "failed", "case0": "done", "case1": "done", "case2": "done"}
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def test_ctrl_c_stops_the_batch_with_a_manifest_of_what_finished_and_no_partial_files(tmp_path):
    import os
    import signal

    folder = tmp_path / "in"
    write_ct_bundles(folder, 4, (2, 32, 32), views=8, noise_std=0.05)
    out = tmp_path / "out"
    slow = ["--prior", "gaussian", "--sampler", "dds", "-p", "sampler.steps=1000"]  # seconds an item
    process = subprocess.Popen(
        [sys.executable, "-m", "medrecon", "batch", str(folder), *slow, "-o", str(out), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "case0.json").exists():
        time.sleep(0.2)
    assert (out / "case0.json").exists(), "the first item never finished"
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "item(s) finished" in err and "manifest.json" in err
    statuses = {r["item"]: r["status"] for r in json.loads((out / "manifest.json").read_text())}
    assert statuses["case0"] == "done" and "cancelled" in statuses.values()
    assert "pending" not in statuses.values()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or "staged" in p.name]
    assert not leftovers
    for name, status in statuses.items():  # an output exists exactly for the finished items
        assert (out / f"{name}.nii.gz").exists() == (status == "done")


def test_an_item_whose_worker_dies_is_run_again_on_another(tmp_path):
    folder = tmp_path / "in"
    write_ct_bundles(folder, 2, (2, 32, 32), views=8, noise_std=0.05)
    scheduler_file = tmp_path / "scheduler.json"
    scheduler, address = start_scheduler(scheduler_file)
    processes = [scheduler]
    try:
        give_up = time.time() + 180
        workers = [start_worker(scheduler_file, "--no-nanny") for _ in range(2)]
        processes += workers
        recipe = {"prior": {"name": "gaussian"}, "sampler": {"name": "dds", "steps": 1000}}  # seconds an item
        out = tmp_path / "out"
        import threading

        def kill_one_worker_mid_item():  # once both items run, one worker process dies
            while time.time() < give_up and not out.exists():
                time.sleep(0.1)
            time.sleep(1.0)
            workers[0].kill()

        killer = threading.Thread(target=kill_one_worker_mid_item, daemon=True)
        killer.start()
        rows = batch([folder], recipe, out, scheduler=address, threads_per_worker=1)
        killer.join(timeout=5)
        assert workers[0].poll() is not None  # it did die during the batch
        assert {r["item"]: r["status"] for r in rows} == {"case0": "done", "case1": "done"}
        assert len({r["worker"] for r in rows}) == 1  # both done by the survivor: one was run again
        assert (out / "case0.nii.gz").is_file() and (out / "case1.nii.gz").is_file()
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)


def test_files_of_a_reader_plugin_are_read_with_its_options(tmp_path):
    """A cohort of fully sampled fastMRI files, undersampled on reading (-r acceleration=4), as
    `medrecon reconstruct` does one; other options are another result, bad ones fail up front."""
    from tests.helpers import write_fastmri_file

    folder = tmp_path / "in"
    folder.mkdir()
    write_fastmri_file(folder / "file_brain_1.h5", slices=1, coils=4, encoded=(96, 112), recon=(48, 48))
    args = ["batch", str(folder), "--reader", "fastmri", "-r", "acceleration=4", "--sampler", "cg"]
    args += ["-p", "sampler.iterations=5", "-o", str(tmp_path / "out"), "--workers", "1"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out" / "file_brain_1.json").read_text())
    assert info["undersampled"]["acceleration_requested"] == 4.0 and "metrics_fastmri" in info
    assert nib.load(str(tmp_path / "out" / "file_brain_1.nii.gz")).shape == (48, 48, 1)
    recipe = {"sampler": {"name": "cg", "iterations": 5}}
    again = batch(
        [folder], recipe, tmp_path / "out", workers=1, reader="fastmri", read_options={"acceleration": 4}
    )
    assert again[0]["status"] == "skipped (done)"  # the same reading: resumed
    # the reader auto-detected, another acceleration: another result
    other = batch([folder], recipe, tmp_path / "out", workers=1, read_options={"acceleration": 2})
    assert other[0]["status"] == "done"
    info = json.loads((tmp_path / "out" / "file_brain_1.json").read_text())
    assert info["undersampled"]["acceleration_requested"] == 2.0
    with pytest.raises(InputError, match="accel"):
        batch([folder], recipe, tmp_path / "bad", reader="fastmri", read_options={"accel": 4})
    with pytest.raises(InputError, match="no reader named 'dicom-sr'"):
        batch([folder], recipe, tmp_path / "bad", reader="dicom-sr")
    assert not (tmp_path / "bad").exists()
