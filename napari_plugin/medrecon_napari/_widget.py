"""The "Reconstruct" dock widget: simulate-then-reconstruct on an image layer, in a worker thread."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import QVBoxLayout, QWidget

if TYPE_CHECKING:
    import napari

NONE = "(none)"
CUSTOM = "(custom)"
PREVIEW_EVERY = 5


def device_choices() -> list[str]:
    import torch

    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


class ReconstructWidget(QWidget):
    """Choose operator, prior and sampler from the live registry, run, watch, cancel."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from magicgui.widgets import (
            ComboBox,
            Container,
            FloatSpinBox,
            Label,
            ProgressBar,
            PushButton,
            SpinBox,
        )

        from medrecon import default_host

        self.viewer = napari_viewer
        self.host = default_host()
        self.worker = None
        self.activity = None  # the run's bar in napari's activity dock
        self._live = False
        self._closed = False  # the viewer (and with it this widget) was closed
        # closing the viewer deletes the widget: stop the run, and touch no deleted Qt part after
        self.destroyed.connect(lambda *_: self._on_closed())
        from medrecon.apps.presets import presets

        names = {kind: sorted(self.host.components[kind]) for kind in ("operator", "prior", "sampler")}
        self.presets = {p.name: p for p in presets()}
        self.preset = ComboBox(label="preset", choices=[CUSTOM, *self.presets])
        self.preset.tooltip = "the demo's cases and recipes: fills operator, prior, sampler and noise"
        self.load_button = PushButton(text="Load recipe...")
        self.save_button = PushButton(text="Save recipe...")
        self.phase = "none"
        self.source = ComboBox(label="source", choices=self._image_layers)
        self.source.tooltip = (
            "an image used as ground truth (simulate, then reconstruct), or a bundle's layer"
        )
        self.source_kind = Label(value="")  # says what the run does with the selected layer
        self.source_kind.native.setWordWrap(True)
        self.operator = ComboBox(label="operator", choices=names["operator"])
        self.prior = ComboBox(label="prior", choices=[NONE, *names["prior"]])
        self.sampler = ComboBox(label="sampler", choices=names["sampler"])
        self.noise = FloatSpinBox(label="noise std", value=0.01, min=0.0, max=1e9, step=0.001)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.device = ComboBox(label="device", choices=device_choices())
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # long messages wrap instead of being cut
        self.forms = {kind: Container(labels=True) for kind in ("operator", "prior", "sampler")}
        files = Container(widgets=[self.load_button, self.save_button], layout="horizontal", labels=False)
        top = Container(
            widgets=[self.preset, files, self.source, self.source_kind, self.operator], labels=True
        )
        middle = Container(widgets=[self.prior], labels=True)
        bottom = Container(widgets=[self.sampler], labels=True)
        run = Container(
            widgets=[
                self.noise,
                self.seed,
                self.device,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ],
            labels=True,
        )
        layout = QVBoxLayout()
        for part in (
            top,
            self.forms["operator"],
            middle,
            self.forms["prior"],
            bottom,
            self.forms["sampler"],
            run,
        ):
            layout.addWidget(part.native)
        layout.addStretch()
        self.setLayout(layout)
        self._parts = (top, middle, bottom, run)
        for kind, combo in (("operator", self.operator), ("prior", self.prior), ("sampler", self.sampler)):
            combo.changed.connect(lambda _=None, k=kind: self._rebuild(k))
            self._rebuild(kind)
        self.preset.changed.connect(lambda value: self.apply_preset(value))
        self.load_button.clicked.connect(self._load_dialog)
        self.save_button.clicked.connect(self._save_dialog)
        self.source.changed.connect(lambda _=None: self._fit_source())
        self._fit_source()
        combos = (self.operator, self.prior, self.sampler)
        # (a preset changes the parts it fills; one that cannot be applied keeps its message)
        for part in (self.source, self.device, *combos, *self.forms.values()):
            part.changed.connect(lambda _=None: self._show_cost())
        self._show_cost()
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(lambda _=None: self.source.reset_choices())
        self.viewer.layers.events.removed.connect(lambda _=None: self.source.reset_choices())

    # --- presets and recipes -------------------------------------------------------------
    def _fit_source(self) -> None:
        """A preset that fits the selected layer: a measurement's operator, else MRI (diffusion);
        never the alphabetically first components. The form says what the layer will be used as."""
        from medrecon.apps.presets import preset_for

        operator = self._measurement_operator()
        if self.source.value is None:
            self.source_kind.value = "no image layer: open one, a sample, a bundle or a fastMRI file"
        elif operator is None:
            self.source_kind.value = (
                "an image: the ground truth, simulated with the operator and noise below, then "
                "reconstructed (PSNR / SSIM against it)"
            )
        else:
            self.source_kind.value = (
                f"a measurement ({operator}): reconstructed from its own data, operator and noise"
            )
        if self.preset.value not in (None, CUSTOM) and not operator:
            return
        self.preset.value = preset_for(operator).name

    def _measurement_operator(self) -> str | None:
        layer = self.source.value
        measurement = None if layer is None else layer.metadata.get("medrecon_measurement")
        return None if measurement is None else measurement.operator.name

    def apply_preset(self, name: str) -> None:
        """Fill the form from a preset; one whose components are not installed here (a prior from
        a plugin this environment lacks) leaves the form as it was and says why in the status."""
        from medrecon import MedreconError, Recipe

        if name in (None, CUSTOM) or getattr(self, "_applying", False):
            return
        preset = self.presets[name]
        try:
            Recipe.from_dict({"operator": preset.operator, **preset.recipe}).validate(self.host)
        except MedreconError as err:
            self._applying = True
            try:
                self.preset.value = CUSTOM  # the form below is not that preset
            finally:
                self._applying = False
            self.status.value = f"preset not applied: {err}"
            return
        self._applying = True
        try:
            self.set_recipe({"operator": preset.operator, **preset.recipe})
            self.noise.value = preset.noise_std
            self.phase = preset.phase
            self.preset.value = name  # set_recipe marked the form custom; it is this preset
        finally:
            self._applying = False

    def set_recipe(self, recipe: dict) -> None:
        """Fill the combo boxes and forms from a recipe (sections missing from it are left)."""
        from medrecon_napari._forms import set_form_values

        combos = {"operator": self.operator, "prior": self.prior, "sampler": self.sampler}
        for kind, combo in combos.items():
            table = recipe.get(kind)
            if table is None:
                if kind == "prior" and "sampler" in recipe:
                    combo.value = NONE
                continue
            combo.value = table["name"]  # rebuilds the form at its defaults
            set_form_values(self.forms[kind], {k: v for k, v in table.items() if k != "name"})
        self.phase = "none"
        self.preset.value = CUSTOM

    def load_recipe(self, path) -> None:
        """Fill the widget from a recipe TOML (the one `medrecon reconstruct --recipe` reads). A
        file that is not a valid recipe here (unreadable, not TOML, a component not installed, an
        unknown parameter or a bad value) leaves the form as it was and says why in the status."""
        from medrecon import MedreconError, Recipe

        try:
            recipe = Recipe.from_toml(path)
            recipe.validate(self.host)
        except MedreconError as err:
            self.status.value = f"recipe not loaded: {err}"
            return
        self.set_recipe(recipe.to_dict())

    def save_recipe(self, path) -> None:
        """Write the widget's recipe as TOML (operator, prior, sampler), atomically."""
        from medrecon import Recipe

        Recipe.from_dict(self.recipe()).save(path)
        self.status.value = f"recipe saved to {path}"

    def _load_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Load recipe", "", "TOML recipes (*.toml)")
        if path:
            self.load_recipe(path)

    def _save_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Save recipe", "recipe.toml", "TOML recipes (*.toml)")
        if path:
            self.save_recipe(path)

    # --- forms -----------------------------------------------------------------------------
    def _image_layers(self, _widget=None) -> list:
        import napari

        return [layer for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _spec(self, kind: str):
        name = {"operator": self.operator, "prior": self.prior, "sampler": self.sampler}[kind].value
        return None if name in (None, NONE) else self.host.get(kind, name).spec

    def _rebuild(self, kind: str) -> None:
        from medrecon_napari._forms import parameter_form

        form = self.forms[kind]
        form.clear()
        spec = self._spec(kind)
        if spec is not None:
            form.extend(list(parameter_form(spec)))

    def recipe(self) -> dict:
        from medrecon_napari._forms import form_values

        out = {}
        for kind in ("operator", "prior", "sampler"):
            spec = self._spec(kind)
            if spec is not None:
                out[kind] = {"name": spec.name, **form_values(self.forms[kind], spec)}
        return out

    # --- cost ------------------------------------------------------------------------------
    def cost_note(self) -> str:
        """What a run of the form's recipe on the source will take: network evaluations (NFE),
        slices and device, known before Run."""
        from medrecon import ComponentRecipe, MedreconError, build_component

        layer = self.source.value
        slices = 1 if layer is None or layer.data.ndim < 3 else layer.data.shape[0]
        try:
            recipe = ComponentRecipe.from_dict("sampler", self.recipe()["sampler"])
            nfe = build_component("sampler", recipe, self.host).planned_nfe
        except (MedreconError, KeyError) as err:
            return f"the sampler's settings do not fit: {err}"
        work = f"NFE {nfe} x {slices} slice(s)" if nfe else f"no network, {slices} slice(s)"
        return f"{work} on {self._device_label()}"

    def _show_cost(self) -> None:
        if not self._live:  # while a run is under way, the status reports its steps
            self.status.value = self.cost_note()

    def _device_label(self) -> str:
        import torch

        if self.device.value == "auto":
            return "cuda:0 (auto)" if torch.cuda.is_available() else "the CPU (auto: no CUDA device)"
        return self.device.value

    # --- running ---------------------------------------------------------------------------
    def start(self) -> None:
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        from medrecon import Recipe

        if self._live:  # Run is disabled meanwhile; a script calling start() gets told too
            self.status.value = "a run is under way: wait for it or cancel it first"
            return
        layer = self.source.value
        if layer is None:
            show_error("medrecon: add or open an image layer to use as ground truth")
            return
        recipe = self.recipe()
        measurement = layer.metadata.get("medrecon_measurement")  # a loaded bundle: no simulation
        if measurement is not None:  # it brings its operator: the form's only says how to simulate
            recipe = Recipe.from_dict(recipe).without("operator").to_dict()
        self._set_running(True)
        self._live = True  # steps are shown until the run is cancelled or ends
        self._open_activity(recipe["sampler"]["name"])
        self._started = time.perf_counter()
        self._run = {"source": layer.name, "sampler": recipe["sampler"]["name"], "recipe": recipe}
        self.status.value = f"running: {self.cost_note()}"
        self.worker = create_worker(
            _work,
            layer.data if measurement is None else measurement,
            recipe,
            self.noise.value,
            self.seed.value,
            self.device.value,
            self.host,
            self.phase,
            _start_thread=False,
        )
        self.worker.yielded.connect(self._on_step)
        self.worker.returned.connect(lambda result: self._on_result(layer, result))
        self.worker.errored.connect(self._on_error)
        self.worker.aborted.connect(self._on_cancelled)
        self.worker.finished.connect(lambda: self._set_running(False))
        self.worker.start()

    def _on_closed(self) -> None:
        self._closed = True
        self._live = False
        if self.worker is not None:
            self.worker.quit()  # napari quits it too where it tracks the worker; quitting twice is fine
        self._close_activity()

    def _on_cancelled(self) -> None:
        if self._closed:
            return
        step = f"step {self.progress.value} of {self.progress.max}"
        if "medrecon preview" in self.viewer.layers:  # kept, and marked as what it is
            preview = self.viewer.layers["medrecon preview"]
            base = f"{self._run['source']} {self._run['sampler']} (cancelled at {step})"
            preview.name = self._new_name(base)
            preview.metadata["medrecon_recipe"] = self._run["recipe"]
            preview.metadata["medrecon_cancelled_at"] = self.progress.value
        self.status.value = f"cancelled at {step}; the last preview is kept, marked cancelled"

    def cancel(self) -> None:
        if self.worker is not None:
            self._live = False  # steps already queued are not shown any more
            self.worker.quit()  # the generator is closed at its next step

    def _set_running(self, running: bool) -> None:
        if self._closed:
            self._close_activity()
            self.worker_done()
            return
        for part in self._parts[:3]:
            part.enabled = not running
        for form in self.forms.values():
            form.enabled = not running
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        if not running:
            self._live = False
            self._close_activity()
            self.worker_done()

    def worker_done(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # give the GPU memory of the run back

    def _on_step(self, step) -> None:
        if not self._live or self._closed:
            return
        self.progress.max = step.total
        self.progress.value = step.index + 1
        elapsed = time.perf_counter() - self._started
        left = elapsed / (step.index + 1) * (step.total - step.index - 1)
        self.status.value = (
            f"step {step.index + 1} of {step.total}: {elapsed:.0f} s elapsed, about {left:.0f} s left"
        )
        self._report_activity(step)
        if not self._live:  # updating the bar processed the run's end: no preview after the result
            return
        if step.estimate is not None and (step.index % PREVIEW_EVERY == 0 or step.index + 1 == step.total):
            self._show("medrecon preview", step.estimate, self.source.value)

    def _open_activity(self, sampler: str) -> None:
        """The run's bar in napari's activity dock (its length known from the first step); the
        dock's cancel button cancels the run."""
        from napari.utils import cancelable_progress

        self.activity = cancelable_progress(total=0, desc=f"medrecon {sampler}")

    def _report_activity(self, step) -> None:
        bar = self.activity  # updating the bar may process events, the run's end among them
        if bar is None:
            return
        if bar.total != step.total:
            bar.total = step.total
        bar.update(step.index + 1 - bar.n)
        if bar.is_canceled:
            self.cancel()

    def _close_activity(self) -> None:
        if self.activity is not None:
            self.activity.close()
            self.activity = None

    def _on_result(self, layer, result) -> None:
        from napari.utils.notifications import show_error

        if self._closed:
            return
        self._live = False  # steps still queued (or being shown) add no preview over the result
        if "medrecon preview" in self.viewer.layers:
            self.viewer.layers.remove("medrecon preview")
        if isinstance(result, Failure):
            self.status.value = f"failed: {result.message}"[:300]
            show_error(f"medrecon: {result.message}")
            return

        # a new layer per run (named after source and sampler, numbered when the name is taken),
        # so that runs with other settings can be compared side by side
        name = self._new_name(f"{layer.name} {result.info['recipe']['sampler']['name']}")
        self._show(name, result.image, layer)
        metadata = self.viewer.layers[name].metadata
        metadata.update(medrecon_recipe=result.info["recipe"], medrecon_info=result.info)
        if result.std is not None:  # uncertainty: its own colormap, contrast from 0
            std = result.std.detach().cpu()
            top = float(np.quantile(std.abs().numpy(), 0.995))  # torch's quantile stops at 2^24 values
            self._show(f"{name} std", std, layer, colormap="magma", contrast_limits=(0.0, top or 1.0))
        for key, value in result.extras.items():
            self.viewer.add_image(value.detach().cpu().numpy(), name=f"{name} {key}")
        timing = f"{result.info.get('seconds', 0):.1f} s, NFE {result.info.get('nfe', 0)}"
        scores = result.info.get("metrics")  # the core scores against a stored ground truth
        if scores is None:  # a bundle without ground truth
            self.status.value = f"{name}: {timing}"
        else:
            metadata.update(scores)
            quality = f"PSNR {scores['psnr_db']:.2f} dB, SSIM {scores['ssim']:.3f}"
            self.status.value = f"{name}: {quality}, {timing}"

    def _new_name(self, base: str) -> str:
        """`base`, or `base [n]` with the first n that no layer has."""
        name, n = base, 2
        while name in self.viewer.layers:
            name, n = f"{base} [{n}]", n + 1
        return name

    def _show(self, name: str, tensor, source, **kwargs) -> None:
        data = tensor.detach().cpu()
        data = (data.abs() if data.is_complex() else data).numpy()
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
        else:  # placed exactly over the source, in its units and axes, and in its contrast
            placed = {
                "affine": source.affine.affine_matrix,
                "units": source.units,
                "axis_labels": source.axis_labels,
                "contrast_limits": tuple(source.contrast_limits),
            }
            self.viewer.add_image(data, name=name, **{**placed, **kwargs})

    def _on_error(self, err: Exception) -> None:
        from napari.utils.notifications import show_error

        if self._closed:
            return
        self.status.value = "failed"
        show_error(f"medrecon: {err}")


class Failure:
    """A run that ended in an error the user can act on (bad input or pairing, out of memory)."""

    def __init__(self, error: BaseException):
        self.message = str(error) or type(error).__name__


def _work(source, recipe: dict, noise_std: float, seed: int, device: str, host, phase="none"):
    """Runs in the worker thread: the core's run of the recipe on the layer's measurement (a loaded
    bundle) or on its volume (simulated first), yielding every step.

    Errors a user can act on are returned as a Failure (shown as a notification); anything else is
    a bug and propagates to the worker's errored signal.
    """
    import torch

    from medrecon import Measurement, MedreconError, run_steps

    try:
        if not isinstance(source, Measurement):
            source = np.asarray(source, dtype=np.float32)
        steps = run_steps(
            recipe, source, noise_std=noise_std, seed=seed, device=device, phase=phase, host=host
        )
        result = yield from steps
    except (MedreconError, torch.OutOfMemoryError, MemoryError) as err:
        return Failure(err)
    return result
