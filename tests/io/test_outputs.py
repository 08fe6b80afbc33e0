"""Outputs as one set: checked before the work, written all-or-nothing, never silently replaced."""

from __future__ import annotations

import errno
import json
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import medrecon
from medrecon.apps.cli import main
from medrecon.io.outputs import check_output_set, output_lock, write_reconstruction


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def bundle(tmp_path, mri_measurement):
    path = tmp_path / "m.h5"
    medrecon.save_bundle(path, mri_measurement)
    return path


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_bad_output_name_is_refused_before_any_work(bundle, tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr("medrecon.api.reconstruct", lambda *a, **k: called.append(1))
    result = run("reconstruct", bundle, "-o", tmp_path / "out.png", "--sampler", "cg")
    assert result.exit_code == 2 and "must end in .nii or .nii.gz" in result.output and not called


def test_an_empty_or_nameless_output_is_refused(tmp_path):
    with pytest.raises(medrecon.InputError, match="the output path is empty"):
        check_output_set("")
    for nameless in (tmp_path / ".nii.gz", tmp_path / ".nii"):
        with pytest.raises(medrecon.InputError, match="has no name before its extension"):
            check_output_set(nameless)
    assert not list(tmp_path.iterdir())


def test_a_read_only_folder_is_refused_before_any_work(bundle, tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)  # the probe meets a read-only FS
    result = run("reconstruct", bundle, "-o", tmp_path / "out.nii.gz", "--sampler", "cg")
    assert result.exit_code == 2
    assert "is not writable (Read-only file system)" in result.output
    assert files_in(tmp_path) == ["m.h5"]


def test_too_little_free_space_is_refused_before_any_work(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(medrecon.InputError, match=r"not enough free space.*needs about 1.0 MB"):
        check_output_set(tmp_path / "out.nii.gz", expected_bytes=2**20)


def test_a_full_disk_in_the_middle_of_a_set_leaves_the_earlier_set_whole(tmp_path, monkeypatch):
    image = torch.rand(2, 8, 8)
    first = medrecon.Reconstruction(image, std=image * 0.1, info={"run": 1})
    out = tmp_path / "r.nii.gz"
    write_reconstruction(out, first)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    import medrecon.io.outputs as outputs

    real, calls = outputs.save_nifti, []

    def fail_on_second(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(outputs, "save_nifti", fail_on_second)
    second = medrecon.Reconstruction(image * 2, std=image * 0.2, info={"run": 2})
    with pytest.raises(OSError, match="No space left"):
        write_reconstruction(out, second)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no part of run 2, no temp


def test_an_existing_output_is_refused_unless_overwrite_which_replaces_the_whole_set(bundle, tmp_path):
    out = tmp_path / "r.nii.gz"
    assert (
        run(
            "reconstruct",
            bundle,
            "-o",
            out,
            "--sampler",
            "dds",
            "--prior",
            "gaussian",
            "-p",
            "sampler.steps=2",
            "-p",
            "sampler.samples=2",
        ).exit_code
        == 0
    )
    assert (tmp_path / "r_std.nii.gz").is_file()
    again = run("reconstruct", bundle, "-o", out, "--sampler", "cg")
    assert (
        again.exit_code == 2 and "exists (r.json, r.nii.gz, r_std.nii.gz); give --overwrite" in again.output
    )
    replaced = run("reconstruct", bundle, "-o", out, "--sampler", "cg", "--overwrite")
    assert replaced.exit_code == 0
    assert not (tmp_path / "r_std.nii.gz").exists()  # the stale std map of the earlier run went with it
    sidecar = json.loads((tmp_path / "r.json").read_text())
    assert sidecar["recipe"]["sampler"]["name"] == "cg" and set(sidecar["files"]) == {"image"}


def test_two_runs_on_one_output_the_second_is_refused(tmp_path):
    out = tmp_path / "r.nii.gz"
    entered, release, errors = threading.Event(), threading.Event(), []

    def first():
        with output_lock(out):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(10)
    try:
        with pytest.raises(medrecon.InputError, match=r"another run is writing .*r.nii.gz"), output_lock(out):
            errors.append("second run got the lock")
    finally:
        release.set()
        thread.join()
    assert not errors and not (tmp_path / "r.nii.gz.lock").exists()
    with output_lock(out):  # free again once the first run is done
        pass


def test_a_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    out = tmp_path / "r.nii.gz"
    (tmp_path / "r.nii.gz.lock").write_text("999999999")  # no such process
    with output_lock(out):
        pass


def test_nothing_non_finite_is_written(tmp_path):
    bad = medrecon.Reconstruction(torch.tensor([[np.nan, 1.0]]))
    with pytest.raises(medrecon.InputError, match="NaN or Inf"):
        write_reconstruction(tmp_path / "r.nii.gz", bad)
    assert files_in(tmp_path) == []


class NaNAtStep3(medrecon.Sampler):
    """A sampler whose third step goes non-finite."""

    requires = (medrecon.LINEAR_OPERATOR,)

    def iterate(self, problem, prior, *, seed=0):
        x = problem.operator.adjoint(problem.y)
        for i in range(5):
            if i == 2:
                x = x * float("nan")
            yield medrecon.Step(i, 5, x)
        return medrecon.Reconstruction(x)


@pytest.fixture
def nan_host(host):
    class Plugin:
        @medrecon.hookimpl
        def medrecon_samplers(self):
            yield medrecon.SamplerSpec(name="nan-at-3", factory=NaNAtStep3, summary="goes NaN at step 3")

    host.register(Plugin(), name="nan-test")
    return host


def test_a_sampler_going_non_finite_is_stopped_naming_the_step(nan_host, mri_measurement):
    with pytest.raises(medrecon.NumericalError, match=r"sampler 'nan-at-3' produced \d+ NaN.*at step 3 of 5"):
        medrecon.reconstruct({"sampler": {"name": "nan-at-3"}}, mri_measurement, host=nan_host)


def test_a_diverging_run_exits_1_and_writes_nothing(nan_host, bundle, tmp_path, monkeypatch):
    monkeypatch.setattr("medrecon.apps.cli._host", lambda ctx: nan_host)
    result = run("reconstruct", bundle, "-o", tmp_path / "r.nii.gz", "--sampler", "nan-at-3")
    assert result.exit_code == 1
    assert "sampler 'nan-at-3' produced" in result.output and "nothing was written" in result.output
    assert files_in(tmp_path) == ["m.h5"]


def test_ctrl_c_in_demo_says_what_it_wrote_and_which_earlier_files_it_replaced(tmp_path, monkeypatch):
    import medrecon.apps.demo

    out = tmp_path / "demo"
    out.mkdir()
    (out / "ground_truth.nii.gz").write_text("an earlier run")
    (out / "metrics.md").write_text("an earlier run")

    def interrupted(*args, **kwargs):  # Ctrl-C during the first case, after the ground truth
        raise KeyboardInterrupt

    monkeypatch.setattr(medrecon.apps.demo, "run_case", interrupted)
    result = run("demo", "--out", out, "--quick", "--overwrite")
    assert result.exit_code == 130
    assert "1 file(s) were written" in result.output
    assert "replacing ground_truth.nii.gz of an earlier run" in result.output
    assert (out / "metrics.md").read_text() == "an earlier run"  # not replaced: not said to be


def test_figures_draw_anatomy_upright(tmp_path):
    """RAS slices have anterior at high row indices: the figure puts it at the top."""
    import matplotlib.image

    from medrecon.apps.figures import case_figure

    truth = np.zeros((1, 40, 40), np.float32)
    truth[0, 25:, :] = 1.0  # the anterior part of the slice is bright
    path = case_figure(
        tmp_path / "f.png", "t", truth, (np.zeros((8, 8)), "measurement"), [], error_of=("x", truth)
    )
    png = matplotlib.image.imread(path)[..., :3].mean(axis=-1)
    height, width = png.shape
    panel = png[int(0.2 * height) : int(0.85 * height), int(0.05 * width) : int(0.28 * width)]
    rows = panel.mean(axis=1)
    top, bottom = rows[: len(rows) // 3].mean(), rows[-len(rows) // 3 :].mean()
    assert top > bottom + 0.3


def test_sigterm_during_a_run_leaves_no_file_and_no_lock(bundle, tmp_path, monkeypatch):
    """A job scheduler's SIGTERM is handled as Ctrl-C: exit 130, nothing written, the lock gone."""
    import os
    import signal

    import medrecon.api

    def terminated_midway(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM should have stopped the run")

    monkeypatch.setattr(medrecon.api, "reconstruct", terminated_midway)
    before = signal.getsignal(signal.SIGTERM)
    result = run("reconstruct", bundle, "-o", tmp_path / "r.nii.gz", "--sampler", "cg")
    assert result.exit_code == 130 and "interrupted; nothing was written" in result.output
    assert files_in(tmp_path) == ["m.h5"]  # no image, no sidecar, no r.nii.gz.lock
    assert signal.getsignal(signal.SIGTERM) == before  # the CLI's handler does not outlive it
