"""The README tells the truth: its commands and its plugin example are the ones CI and tests run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_plugin_example_is_the_plugin_the_tests_install():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Writing a plugin", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    plugin = ROOT / "tests/plugin_dists/medrecon-example/medrecon_example/plugin.py"
    assert code == plugin.read_text()


def test_ci_runs_the_readme_commands():
    lines = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    install, test, demo = lines[:3]
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert install in ci and "pip install torch==2.13.0" in install
    assert test in ci and "pytest" in test
    assert demo.startswith("medrecon demo") and any(line.startswith("medrecon demo") for line in ci)


def test_readme_monai_pipeline_runs_as_written(tmp_path, monkeypatch, capsys):
    import nibabel as nib

    from medrecon.samples import brain_sample

    readme = (ROOT / "README.md").read_text()
    code = readme.split("## In a MONAI pipeline", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "volumes").mkdir()
    volume, affine = brain_sample("1mm")  # at brain-1mm's 1 mm; a 96 x 96 centre crop keeps it quick
    volume = volume[:, 68:164, 50:146]
    for i in range(2):  # the held-out brain slab as two 8-slice volumes (SSIM's window is 7)
        part = volume[8 * i : 8 * (i + 1)]
        nib.save(nib.Nifti1Image(part.transpose(2, 1, 0), affine), str(tmp_path / "volumes" / f"v{i}.nii.gz"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = [line for line in capsys.readouterr().out.splitlines() if "SSIM" in line]
    assert len(lines) == 2 and all(float(line.split("SSIM")[1]) > 0.5 for line in lines)


def test_readme_examples_run_as_written(tmp_path, monkeypatch):
    """The "Using it" commands that need no training run (sample, plugins, simulate, reconstruct),
    then the Python example, in a fresh folder as a newcomer would; the training and demo lines
    are covered by their own tests."""
    import shlex

    from click.testing import CliRunner

    from medrecon.apps.cli import main

    readme = (ROOT / "README.md").read_text()
    using = readme.split("## Using it", 1)[1]
    commands = using.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    monkeypatch.chdir(tmp_path)
    ran = 0
    for line in commands:
        words = shlex.split(line, comments=True)
        if not words or words[1] in ("train-prior", "train-conditional", "demo"):
            continue
        if "--recipe" in words:
            (tmp_path / "recipe.toml").write_text(using.split("```toml\n", 1)[1].split("```", 1)[0])
        result = CliRunner().invoke(main, words[1:], catch_exceptions=False)
        assert result.exit_code == 0, f"{line}: {result.output}"
        ran += 1
    assert ran >= 6 and (tmp_path / "dds.nii.gz").is_file()
    code = using.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "recon-python.nii.gz").is_file()
