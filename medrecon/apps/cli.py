"""The `medrecon` command line: plugins, simulate, reconstruct, demo.

Exit codes: 0 success, 1 unexpected failure, 2 bad input (usage, recipe, file, pairing), 130 cancelled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from medrecon.errors import Cancelled, MedreconError, NumericalError, RecipeError
from medrecon.host.recipe import parse_assignments, parse_overrides

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130

DEVICE_HELP = "auto (CUDA if present), cpu, cuda or cuda:N"


def _host(ctx: click.Context):
    from medrecon.host.plugin import PluginHost

    obj = ctx.find_root().obj
    if obj.get("host") is None:
        obj["host"] = PluginHost.from_entry_points(builtins_only=obj["no_plugins"])
    return obj["host"]


class _Group(click.Group):
    """Turns medrecon's own errors into one clear line and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        import contextlib
        import signal

        def terminated(signum, frame):  # SIGTERM (a job scheduler, `kill`): clean up as for Ctrl-C
            raise KeyboardInterrupt

        previous = None
        with contextlib.suppress(ValueError):  # ValueError: not the main thread (an embedding program)
            previous = signal.signal(signal.SIGTERM, terminated)
        try:
            return super().invoke(ctx)
        except Cancelled as err:
            click.echo(f"cancelled: {err}; nothing was written", err=True)
            sys.exit(EXIT_CANCELLED)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was written", err=True)
            sys.exit(EXIT_CANCELLED)
        except NumericalError as err:  # not the user's input: the run itself failed
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_FAILURE)
        except MedreconError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


@click.group(cls=_Group)
@click.option("--no-plugins", is_flag=True, help="Load the built-in plugins only.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="medrecon")
@click.pass_context
def main(ctx: click.Context, no_plugins: bool, verbose: int) -> None:
    """Reconstruct medical images and volumes from their measurements."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"no_plugins": no_plugins, "host": None}


# ------------------------------------------------------------------------------ shared options


def reader_options(what: str):
    """--reader NAME and -r/--read-option KEY=VALUE (how `what` is read), for reconstruct and batch."""

    def decorate(command):
        command = click.option(
            "-r",
            "--read-option",
            "read_options",
            multiple=True,
            metavar="KEY=VALUE",
            help="An option of the file's reader (`medrecon plugins --describe READER` lists them), "
            "e.g. acceleration=4 (fully sampled fastMRI files, undersampled on reading).",
        )(command)
        return click.option(
            "--reader",
            "reader_name",
            help=f"Read {what} with this reader plugin (default: a medrecon bundle, else the first "
            "reader that takes the file).",
        )(command)

    return decorate


# ------------------------------------------------------------------------------------- plugins


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--describe", metavar="NAME", help="Print one component's parameters.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool, describe: str | None) -> None:
    """List every operator, prior and sampler, with its provider, and the plugins that failed."""
    from medrecon.host.describe import component_record, components_table, describe_table, failed_table

    host = _host(ctx)
    if describe:
        found = host.find(describe)
        if not found:
            from medrecon.errors import PluginError, listing, suggest

            names = [c.name for c in host.all_components()]
            raise PluginError(
                f"no component named '{describe}'{suggest(describe, names)}; installed: {listing(names)}"
            )
        if as_json:
            click.echo(json.dumps([component_record(c, parameters=True) for c in found], indent=2))
        else:
            for comp in found:
                _console().print(describe_table(comp))
        return
    if as_json:
        data = {
            "components": [component_record(c) for c in host.all_components()],
            "failed": [vars(f) for f in host.failed],
        }
        click.echo(json.dumps(data, indent=2))
        return
    console = _console()
    console.print(components_table(host.all_components()))
    if host.failed:
        console.print(failed_table(host.failed))


def _console():
    from rich.console import Console

    return Console()  # the terminal's own width: rich folds long cells instead of wrapping lines


# -------------------------------------------------------------------------------------- sample

SAMPLES = {
    "brain-1mm": "16 axial slices of the MNI152 template at 1 mm (233 x 197), held out of brain-1mm",
    "brain-axial": "the same 16 slices at 64 x 64 (2.8 mm), held out of brain-axial",
    "shepp-logan": "a 3D Shepp-Logan phantom, 64 x 128 x 128 (sigpy)",
}


@main.command()
@click.argument("name", type=click.Choice(list(SAMPLES)))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="NIfTI output.")
@click.option("--slices", type=int, default=None, help="Keep only the middle N slices.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file at OUT.")
def sample(name: str, out: Path, slices: int | None, overwrite: bool) -> None:
    """Write a built-in sample volume as NIfTI: brain-1mm, brain-axial or shepp-logan."""
    from medrecon.apps.demo import middle_slices
    from medrecon.io import save_nifti
    from medrecon.samples import brain_sample, phantom_volume

    if out.exists() and not overwrite:
        raise RecipeError(f"{out} exists; give --overwrite to replace it")
    if slices is not None and slices < 1:
        raise RecipeError(f"--slices must be >= 1, got {slices}")
    if name == "shepp-logan":
        volume, affine = phantom_volume((64, 128, 128)), None
    else:
        volume, affine = brain_sample("1mm" if name == "brain-1mm" else "2.8mm")
    if slices is not None:
        volume, affine = middle_slices(volume, affine, slices)
    save_nifti(out, volume, affine)
    click.echo(f"wrote {out}: {SAMPLES[name]}")


# ------------------------------------------------------------------------------------ simulate


@main.command()
@click.argument("volume", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Bundle (.h5).")
@click.option("--operator", "operator_name", help="Operator name (or give --recipe).")
@click.option("--recipe", type=click.Path(path_type=Path), help="TOML recipe with [operator].")
@click.option("-p", "--param", "params", multiple=True, help="Operator parameter key=value.")
@click.option("--noise-std", type=float, default=0.0, show_default=True, help="In units of y.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at OUT.")
@click.pass_context
def simulate(ctx, volume, out, operator_name, recipe, params, noise_std, seed, device, overwrite) -> None:
    """Simulate a measurement of a VOLUME (NIfTI, DICOM series folder, NRRD, MetaImage) and write
    it as a bundle."""
    from medrecon.api import simulate as simulate_measurement
    from medrecon.host.recipe import Recipe
    from medrecon.io import check_output_path, load_volume, save_bundle

    check_output_path(out, [volume, recipe])
    if out.suffix not in (".h5", ".hdf5"):
        stem = out.name.split(".")[0] or "measurement"
        raise RecipeError(
            f"bundle {out} must end in .h5 (a measurement bundle), e.g. {out.with_name(stem + '.h5')}"
        )
    from medrecon.io.outputs import check_writable, output_lock

    check_writable(out.parent)
    rec = Recipe.load(recipe).override(parse_overrides(params, "operator"), operator=operator_name)
    if rec.operator is None:
        raise RecipeError("name the operator: --operator NAME or --recipe FILE with an [operator] table")
    if rec.prior or rec.sampler:
        raise RecipeError("simulate takes an operator only; give [prior] and [sampler] to reconstruct")
    op = rec.operator
    with output_lock(out):  # a second run writing the same bundle is refused, not raced
        if out.exists() and not overwrite:
            raise RecipeError(f"bundle {out} exists; give --overwrite to replace it, or choose another path")
        vol = load_volume(volume)
        m = simulate_measurement(
            vol.data,
            op,
            noise_std=noise_std,
            seed=seed,
            device=device,
            affine=vol.affine,
            host=_host(ctx),
        )
        save_bundle(out, m, inputs=(volume,))
    click.echo(f"wrote {out}: y {m.y.shape} {m.y.dtype}, operator '{op.name}', noise_std {noise_std}")


# --------------------------------------------------------------------------------- reconstruct


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="NIfTI output.")
@click.option("--recipe", type=click.Path(path_type=Path), help="TOML recipe ([sampler], [prior]).")
@click.option("--sampler", "sampler_name", help="Sampler name (overrides the recipe's).")
@click.option("--prior", "prior_name", help="Prior name (overrides the recipe's).")
@click.option("-p", "--param", "params", multiple=True, help="section.key=value, e.g. sampler.steps=50")
@click.option(
    "--noise-std",
    type=float,
    default=None,
    help="Override the bundle's noise level (where a reader estimated it, the sidecar says how).",
)
@reader_options("BUNDLE")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--overwrite", is_flag=True, help="Replace an earlier output set at OUT (image, std, sidecar ...)."
)
@click.pass_context
def reconstruct(
    ctx,
    bundle,
    out,
    recipe,
    sampler_name,
    prior_name,
    params,
    noise_std,
    reader_name,
    read_options,
    seed,
    device,
    quiet,
    overwrite,
) -> None:
    """Reconstruct a measurement BUNDLE (or a file a reader plugin takes) and write a NIfTI with a JSON
    sidecar."""
    from medrecon.api import reconstruct as run_reconstruction
    from medrecon.host.recipe import Recipe
    from medrecon.io import load_bundle
    from medrecon.io.outputs import check_output_set, output_lock, write_reconstruction

    options = parse_assignments(read_options, "--read-option", "acceleration=4")
    measurement = load_bundle(bundle, reader=reader_name, options=options, host=_host(ctx))
    # the image (and a std map) in float32, uncompressed: an upper bound of what will be written
    check_output_set(out, [bundle, recipe], overwrite=overwrite, expected_bytes=2 * measurement.y.size * 4)
    rec = Recipe.load(recipe)
    overrides = parse_overrides(params)
    operator_name = None
    if "operator" in overrides:  # -p operator.x=... tunes the measurement's own operator
        operator_name = rec.operator.name if rec.operator else measurement.operator.name
    rec = rec.override(overrides, operator=operator_name, prior=prior_name, sampler=sampler_name)
    with output_lock(out):
        with _progress_bar(quiet) as progress:
            result = run_reconstruction(
                rec,
                measurement,
                seed=seed,
                device=device,
                noise_std=noise_std,
                progress=progress,
                host=_host(ctx),
            )
        written = write_reconstruction(
            out, result, affine=measurement.affine, inputs=(bundle, recipe), overwrite=overwrite
        )
    for path in written:
        click.echo(f"wrote {path}")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--recipe",
    type=click.Path(path_type=Path),
    help="TOML recipe ([sampler], [prior]; [operator] to simulate volumes).",
)
@click.option("--sampler", "sampler_name", help="Sampler name (overrides the recipe's).")
@click.option("--prior", "prior_name", help="Prior name (overrides the recipe's).")
@click.option(
    "--simulate",
    "operator_name",
    metavar="OPERATOR",
    help="Simulate volumes with this operator (overrides the recipe's [operator]; -p operator.k=v).",
)
@click.option("-p", "--param", "params", multiple=True, help="section.key=value, e.g. sampler.steps=50")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--scheduler", help="Address of a running Dask scheduler (default: a local cluster here).")
@click.option("--workers", type=int, default=None, help="Local workers (default: one per core).")
@click.option("--threads-per-worker", type=int, default=None, help="Torch threads per worker (default 1).")
@click.option(
    "--noise-std", type=float, default=None, help="Noise for simulated volumes; overrides bundles'."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Per item unless a manifest row sets one."
)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP + " auto: one GPU per worker.")
@click.option("--force", is_flag=True, help="Redo items whose output exists for the same recipe.")
@click.option("--dry-run", is_flag=True, help="List what would run; run nothing.")
@click.option(
    "--retries", type=int, default=1, show_default=True, help="Retries of an item whose worker died."
)
@reader_options("the inputs that are no volume")
def batch(
    inputs,
    recipe,
    sampler_name,
    prior_name,
    operator_name,
    params,
    out,
    scheduler,
    workers,
    threads_per_worker,
    noise_std,
    seed,
    device,
    force,
    dry_run,
    retries,
    reader_name,
    read_options,
) -> None:
    """Reconstruct a cohort on Dask: INPUTS are bundles (or files a reader plugin takes) or volumes
    (simulated with the recipe's [operator]), as paths, globs, folders or CSV manifests (columns path,
    name, seed, noise_std). Each output is written as `medrecon reconstruct` writes it;
    OUT/manifest.json and .csv list every item. Re-running resumes; exit code 1 when an item failed."""
    from rich.console import Console
    from rich.table import Table

    from medrecon.cohort import batch as run_batch
    from medrecon.host.recipe import Recipe

    rec = Recipe.load(recipe).override(
        parse_overrides(params), operator=operator_name, prior=prior_name, sampler=sampler_name
    )
    console = Console(stderr=True)
    done = []

    def on_row(row: dict) -> None:
        done.append(row)
        console.print(f"[{len(done)}] {row['item']}: {row['status']} {row.get('error', '')}".rstrip())

    try:
        rows = run_batch(
            inputs,
            rec,
            out,
            scheduler=scheduler,
            workers=workers,
            threads_per_worker=threads_per_worker,
            seed=seed,
            noise_std=noise_std,
            device=device,
            force=force,
            dry_run=dry_run,
            retries=retries,
            reader=reader_name,
            read_options=parse_assignments(read_options, "--read-option", "acceleration=4"),
            on_row=on_row,
            on_cluster=lambda link: console.print(f"dashboard: {link}"),
        )
    except KeyboardInterrupt:
        click.echo(f"interrupted: {len(done)} item(s) finished; {out / 'manifest.json'} says which", err=True)
        sys.exit(EXIT_CANCELLED)
    table = Table(title=f"medrecon batch: {len(rows)} item(s)")
    columns = ["item", "status", "seconds", "nfe", "device", "worker", "psnr_db", "ssim", "error"]
    columns = [c for c in columns if any(c in row for row in rows)]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, ""))[:80] for c in columns))  # the manifest has it all
    Console().print(table)
    if any(row["status"] == "failed" for row in rows):
        sys.exit(EXIT_FAILURE)


class _progress_bar:
    """A rich progress bar fed by sampler Steps (or nothing, with --quiet)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        if self.quiet:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
            console=Console(stderr=True),  # stdout stays for results (paths, tables, JSON)
        )
        self.bar.__enter__()
        self.task = self.bar.add_task("reconstructing", total=None)
        return self.update

    def update(self, step) -> None:
        self.bar.update(self.task, completed=step.index + 1, total=step.total)

    def __exit__(self, *exc):
        if not self.quiet:
            self.bar.__exit__(*exc)
        return False


# --------------------------------------------------------------------------------- train-prior


@main.command("train-prior")
@click.argument("volumes", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Prior path (no suffix).")
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option(
    "--image-size",
    type=int,
    default=None,
    help="64 for images (with --dataset, give the dataset's own option instead).",
)
@click.option("--axis", type=int, default=2, show_default=True, help="Slice axis after RAS (2: axial).")
@click.option("--holdout", default=None, help="Held-out slab of slice indices START:STOP (validation only).")
@click.option(
    "--holdout-guard",
    type=int,
    default=0,
    show_default=True,
    help="Slices either side of the slab used by neither.",
)
@click.option("--notice", default="", help="Where the data came from and its licence, written into the card.")
@click.option(
    "--dataset",
    default=None,
    help="Train on a plugin's generated images instead of VOLUMES (`medrecon plugins`, kind dataset; "
    "e.g. blur-kernels, the kernel prior of blind-dps).",
)
@click.option(
    "--count", type=int, default=4000, show_default=True, help="With --dataset: images to generate."
)
@click.option(
    "--dataset-option",
    "dataset_options",
    multiple=True,
    help="With --dataset: KEY=VALUE for the dataset (e.g. kernel_size=15).",
)
@click.option(
    "--native",
    is_flag=True,
    help="Train at the volumes' own resolution on random patches (no resizing); applied to whole slices.",
)
@click.option(
    "--orientations",
    default="axial,coronal,sagittal",
    show_default=True,
    help="With --native: slice orientations to train on.",
)
@click.option(
    "--patch-sizes",
    default="48:0.3,64:0.3,128:0.25,224:0.15",
    show_default=True,
    help="With --native: patch sides (multiples of 8) and how often each is drawn, SIZE:WEIGHT.",
)
@click.option(
    "--tissue-map",
    "tissue_maps",
    multiple=True,
    type=click.Path(path_type=Path),
    help="With --native: grey-, then white-matter probability map of the volume (give it twice).",
)
@click.option(
    "--validation",
    default=None,
    help="With --native: validation slab START:STOP (axial), guarded, apart from --holdout.",
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Learning rate of this run.")
@click.option(
    "--lr-decay",
    type=click.Choice(["constant", "cosine"]),
    default="constant",
    show_default=True,
    help="cosine: lower the rate along a half cosine to 1% of --lr at --steps (to finish a resumed run).",
)
@click.option("--checkpoint-every", type=int, default=500, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT.state.pt.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
def train_prior_command(
    volumes,
    out,
    steps,
    image_size,
    axis,
    holdout,
    holdout_guard,
    notice,
    dataset,
    count,
    dataset_options,
    native,
    orientations,
    patch_sizes,
    tissue_maps,
    validation,
    batch_size,
    lr,
    lr_decay,
    checkpoint_every,
    resume,
    seed,
    device,
):
    """Train a 2D slice diffusion prior on NIfTI VOLUMES (files or folders): OUT.json + OUT.safetensors.

    With --dataset NAME, train on COUNT images a plugin generates instead (e.g. blur-kernels)."""
    from medrecon.apps.training import train_dataset_prior, train_native_prior, train_prior

    if dataset and volumes:
        raise RecipeError("--dataset trains on generated images: give no VOLUMES with it")
    if not dataset and not volumes:
        raise RecipeError("give NIfTI VOLUMES to train on (or --dataset NAME, e.g. blur-kernels)")
    if dataset_options and not dataset:
        raise RecipeError("--dataset-option applies to --dataset training")
    files = _training_files(volumes)
    from medrecon.apps.training import check_training_options

    check_training_options(steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every, lr=lr)
    slab = _slab_option("--holdout", holdout)
    validation_slab = _slab_option("--validation", validation)
    if not native and (tissue_maps or validation_slab):
        raise RecipeError("--tissue-map and --validation apply to --native training")
    with _training_bar(steps) as (bar, task):
        options = {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "lr_decay": lr_decay,
            "checkpoint_every": checkpoint_every,
            "seed": seed,
            "device": device,
            "resume": resume,
            "progress": lambda step, total, loss: bar.update(task, completed=step, loss=loss),
        }
        if dataset:
            if image_size is not None:
                raise RecipeError("with --dataset the image size is the dataset's: give --dataset-option")
            report = train_dataset_prior(
                out,
                dataset,
                count=count,
                dataset_options=parse_assignments(dataset_options, "--dataset-option", "kernel_size=15"),
                **options,
            )
        elif native:
            names = ("axial", "coronal", "sagittal")
            wanted = [o.strip() for o in orientations.split(",") if o.strip()]
            unknown = [o for o in wanted if o not in names]
            if unknown or not wanted:
                raise RecipeError(f"--orientations takes axial, coronal, sagittal; got {orientations!r}")
            sizes, weights = _patch_sizes(patch_sizes)
            if axis != 2:
                raise RecipeError("--native holds out axial slabs: leave --axis at 2")
            report = train_native_prior(
                files,
                out,
                tissue_maps=tissue_maps,
                holdout=slab,
                guard=holdout_guard,
                validation=validation_slab,
                axes=[names.index(o) for o in wanted],
                patch_sizes=sizes,
                size_weights=weights,
                data_notice=notice,
                **options,
            )
        else:
            report = train_prior(
                files,
                out,
                image_size=image_size or 64,
                axis=axis,
                holdout=slab,
                guard=holdout_guard,
                data_notice=notice,
                **options,
            )
    _report_training(report)


def _training_files(volumes) -> list[Path]:
    """NIfTI files from VOLUMES (files or folders holding them)."""
    files = []
    for path in volumes:
        if path.is_dir():
            found = sorted(path.glob("*.nii*"))
            if not found:
                raise RecipeError(f"folder {path} holds no NIfTI volume (.nii or .nii.gz)")
            files += found
        elif not path.exists():
            raise RecipeError(
                f"training volume {path} does not exist (give NIfTI files or folders holding them)"
            )
        else:
            files.append(path)
    return files


@contextlib.contextmanager
def _training_bar(steps: int):
    """A transient rich progress bar on stderr for a training run: (bar, task)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        yield bar, bar.add_task("train", total=steps, loss=float("nan"))


def _report_training(report) -> None:
    val = "n/a" if report.validation_loss is None else f"{report.validation_loss:.4f}"
    click.echo(
        f"wrote {report.card}: {report.step} steps, train loss {report.train_loss:.4f}, "
        f"validation {val}, {report.seconds:.0f} s"
    )


# --------------------------------------------------------------------------- train-conditional


@main.command("train-conditional")
@click.argument("volumes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Model path (no suffix).")
@click.option(
    "--method",
    type=click.Choice(["bcdm", "diff-unfolding"]),
    default="diff-unfolding",
    show_default=True,
    help="bcdm: trained per task (give --tasks); diff-unfolding: one model across tasks.",
)
@click.option(
    "--tasks",
    default=None,
    help="Training tasks (operator families from the plugins, `medrecon plugins`), comma-separated; "
    "diff-unfolding's default: every installed one.",
)
@click.option(
    "--task-option",
    "task_options",
    multiple=True,
    help="TASK.PARAM=VALUE, a task's range, LOW:HIGH for a pair (e.g. NAME.acceleration=4:6).",
)
@click.option(
    "--tissue-map",
    "tissue_maps",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Grey-, then white-matter probability map of the volume (give it twice): synthetic contrasts.",
)
@click.option("--holdout", default=None, help="Held-out (test) axial slab START:STOP.")
@click.option("--validation", default=None, help="Validation axial slab START:STOP.")
@click.option(
    "--holdout-guard", type=int, default=0, show_default=True, help="Slices either side used by neither."
)
@click.option("--patch-sizes", default="64:0.6,96:0.4", show_default=True, help="Patch sides SIZE:WEIGHT,...")
@click.option("--notice", default="", help="Where the data came from and its licence, written into the card.")
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option(
    "--batch-size", type=int, default=8, show_default=True, help="64 x 64 patches' worth per batch."
)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--lr-decay", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True)
@click.option("--checkpoint-every", type=int, default=250, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT.state.pt.")
@click.option(
    "--init",
    default=None,
    help="Start from a conditional model's weights (shipped name or card path), with its "
    "architecture: fine-tuning.",
)
@click.option(
    "--conditioning",
    type=click.Choice(["gaussian", "flat"]),
    default=None,
    help="The network's start: Gaussian prior N(0, 1) (default; with --init: that model's), or "
    "BCDM's flat prior (the shipped models).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
def train_conditional_command(
    volumes,
    out,
    method,
    tasks,
    task_options,
    tissue_maps,
    holdout,
    validation,
    holdout_guard,
    patch_sizes,
    notice,
    steps,
    batch_size,
    lr,
    lr_decay,
    checkpoint_every,
    resume,
    init,
    conditioning,
    seed,
    device,
):
    """Train a conditional model (BCDM or Diff-Unfolding) on NIfTI VOLUMES: OUT.json + OUT.safetensors.

    Measurements are simulated on the fly with the operator plugins' training tasks (random
    operators from each task's ranges, random noise levels) from native-resolution patches of the
    volumes."""
    from medrecon.apps.conditional_training import train_conditional

    files = _training_files(volumes)
    sizes, weights = _patch_sizes(patch_sizes)
    with _training_bar(steps) as (bar, task):
        report = train_conditional(
            files,
            out,
            method=method,
            tasks=[t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
            task_options=_task_options(task_options),
            tissue_maps=tissue_maps,
            holdout=_slab_option("--holdout", holdout),
            validation=_slab_option("--validation", validation),
            guard=holdout_guard,
            patch_sizes=sizes,
            size_weights=weights,
            batch_size=batch_size,
            steps=steps,
            lr=lr,
            lr_decay=lr_decay,
            checkpoint_every=checkpoint_every,
            seed=seed,
            device=device,
            resume=resume,
            init=init,
            conditioning=conditioning,
            data_notice=notice,
            progress=lambda step, total, loss: bar.update(task, completed=step, loss=loss),
        )
    _report_training(report)


def _task_options(items: tuple[str, ...]) -> dict[str, dict]:
    """--task-option TASK.PARAM=VALUE items as {task: {param: value}}; LOW:HIGH is a pair."""
    from medrecon.host.recipe import parse_value

    def value(text: str):
        low, colon, high = text.partition(":")
        return [parse_value(low), parse_value(high)] if colon else parse_value(text)

    out: dict[str, dict] = {}
    example = "NAME.acceleration=4:6"
    for key, parsed in parse_assignments(items, "--task-option", example, value).items():
        task, dot, param = key.partition(".")
        if not (dot and task and param) or parsed == "":
            raise RecipeError(f"--task-option {key}=... must look like TASK.PARAM=VALUE (e.g. {example})")
        out.setdefault(task, {})[param] = parsed
    return out


def _patch_sizes(value: str) -> tuple[list[int], list[float]]:
    sizes, weights = [], []
    try:
        for item in value.split(","):
            size, _, weight = item.partition(":")
            sizes.append(int(size))
            weights.append(float(weight) if weight else 1.0)
    except ValueError:
        raise RecipeError(
            f"--patch-sizes takes SIZE[:WEIGHT],... like 64:0.5,128:0.5; got {value!r}"
        ) from None
    return sizes, weights


def _slab_option(name: str, value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    start, sep, stop = value.partition(":")
    if not sep or not start.isdigit() or not stop.isdigit() or int(stop) <= int(start):
        raise RecipeError(f"{name} must be START:STOP slice indices with STOP > START, got {value!r}")
    return int(start), int(stop)


# ---------------------------------------------------------------------------------------- demo


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("medrecon-demo"), show_default=True)
@click.option("--quick", is_flag=True, help="A small, fast version (smoke test, about a minute).")
@click.option(
    "--case",
    "case_names",
    multiple=True,
    help="Run only this case (repeatable): one of the demo's cases, as metrics.md names them (an "
    "unknown name lists them).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--overwrite", is_flag=True, help="Write into OUT even if it holds an earlier run.")
@click.pass_context
def demo(
    ctx, out: Path, quick: bool, case_names: tuple[str, ...], seed: int, device: str, overwrite: bool
) -> None:
    """Reconstruct the shipped 1 mm brain sample (MRI, CT, inpainting, super-resolution, blind
    deblurring) with the brain-1mm diffusion prior and classical baselines: NIfTIs, a PNG per case,
    metrics.md / metrics.json. OUT must be a new or empty folder (or give --overwrite)."""
    from medrecon.apps.demo import prepare_demo_folder, run_demo, select_cases
    from medrecon.device import resolve_device

    resolve_device(device)
    select_cases(case_names, quick)
    earlier = prepare_demo_folder(out, overwrite)
    written: list[Path] = []
    try:
        table = run_demo(
            out,
            quick=quick,
            case_names=case_names,
            seed=seed,
            device=device,
            host=_host(ctx),
            log=lambda line: click.echo(line, err=True),
            written=written,
        )
    except (KeyboardInterrupt, Cancelled):
        replaced = sorted({p.name for p in written} & earlier)
        note = f", replacing {', '.join(replaced)} of an earlier run" if replaced else ""
        click.echo(
            f"interrupted: the demo is incomplete; {len(written)} file(s) were written to {out}{note}",
            err=True,
        )
        sys.exit(EXIT_CANCELLED)
    click.echo(table)
    click.echo(f"results in {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
