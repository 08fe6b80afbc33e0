"""The README's napari screenshots: the 1 mm brain sample, the MRI 8x preset (DDS + the shipped
brain-1mm prior), one screenshot mid-run (progress bar, preview, time left) and one at the end.

    xvfb-run -a python scripts/napari_screenshots.py [--out docs] [--steps 20]

Needs the napari extra and a display (xvfb-run gives a virtual one).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

PRESET = "8-coil MRI, 8x equispaced - DDS + TV-z"


def wait_until(app, condition, timeout: float) -> None:
    """Process Qt events until `condition()` holds (the run happens in a worker thread)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the reconstruction did not get there in time")
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs", help="folder for the two PNG files")
    parser.add_argument("--steps", type=int, default=20, help="DDS steps (the preset has 50)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer()
    app = QApplication.instance()
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample("medrecon", "brain-1mm")
    _, widget = viewer.window.add_plugin_dock_widget("medrecon", "Reconstruct")
    widget.source.value = viewer.layers["brain-1mm sample"]
    widget.preset.value = PRESET
    widget.forms["sampler"]["steps"].value = args.steps
    widget.device.value = "cpu"
    widget.start()
    half = args.steps // 2 + 2  # the preview after half the steps: the image has formed
    wait_until(app, lambda: "medrecon preview" in viewer.layers and widget.progress.value >= half, 900)
    viewer.screenshot(str(out / "napari_running.png"), canvas_only=False)
    wait_until(app, lambda: widget.run_button.enabled, 1800)
    viewer.layers["brain-1mm sample"].visible = False  # the result over the sample, shown alone
    viewer.screenshot(str(out / "napari_result.png"), canvas_only=False)
    print(f"wrote {out / 'napari_running.png'} and {out / 'napari_result.png'}: {widget.status.value}")
    viewer.close()


if __name__ == "__main__":
    main()
