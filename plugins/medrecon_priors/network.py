"""Diffusion priors from networks: any eps(x_t, t) module, or a MONAI DiffusionModelUNet from a prior card.

A prior card is a JSON file beside the weights (safetensors) that says what the network is and how
it was trained: architecture, noise schedule, prediction type, image size, intensity normalisation
and training data. Weights load by path (the card, or its folder) or by the name of weights shipped
inside this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from medrecon import DiffusionPrior, InputError
from medrecon.prior_card import build_unet, card_kind, find_card, load_weights, schedule_table, size_multiple

Prediction = Literal["epsilon", "v_prediction", "sample"]
SHIPPED = Path(__file__).parent / "weights"


class NetworkPrior(DiffusionPrior, torch.nn.Module):
    """A 2D network eps(x_t, t) applied to images (H, W) or volumes slice by slice.

    Every axis before the last two is a slice axis: a volume (D, H, W), or K samples of it, is cut
    into 2D slices along `slice_axis` of the volume (0: D, 1: H, 2: W) and fed to the network
    `slice_batch` slices at a time, so a volume never has to fit the network at once.
    `prediction` converts v- or x0-predicting networks to eps. `data_range` is the intensity range
    the network was trained on (the samplers map the problem into it), None for physical units;
    `background` the value of empty space in it (None: the range's low end, the intensity map
    then shifts as well as scales; 0: it only scales).

    Any slice size works: slices are padded (by reflection) to a multiple of `size_multiple` (what
    the network's down-sampling needs) and the result is cropped back; slices smaller than
    `min_size` are refused. With `complex_parts`, complex images are taken as two real images,
    their real and imaginary parts (for a prior trained on such parts, e.g. of smooth-phase MR
    images). `pixel_spacing` (mm) is what the network was trained at, when known.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        alphas_cumprod: torch.Tensor,
        prediction: Prediction = "epsilon",
        slice_axis: int = 0,
        slice_batch: int = 8,
        data_range: tuple[float, float] | None = (-1.0, 1.0),
        card: dict[str, Any] | None = None,
        *,
        size_multiple: int | None = None,
        min_size: int = 1,
        background: float | None = None,
        complex_parts: bool = False,
        pixel_spacing: tuple[float, float] | None = None,
    ):
        torch.nn.Module.__init__(self)
        if prediction not in ("epsilon", "v_prediction", "sample"):
            raise InputError(f"prediction must be epsilon, v_prediction or sample, got {prediction!r}")
        if slice_axis not in (0, 1, 2) or slice_batch < 1:
            raise InputError(
                f"slice_axis must be 0, 1 or 2 and slice_batch >= 1, got {slice_axis}, {slice_batch}"
            )
        self.network = network.eval()
        self.register_buffer("_abar", torch.as_tensor(alphas_cumprod, dtype=torch.float32))
        self.prediction = prediction
        self.slice_axis = slice_axis
        self.slice_batch = slice_batch
        self.data_range = None if data_range is None else (float(data_range[0]), float(data_range[1]))
        self.card = card or {}
        if size_multiple is None:  # a MONAI UNet halves the size once per level below the first
            levels = len(getattr(network, "block_out_channels", ()) or (0,))
            size_multiple = 2 ** (levels - 1)
        if size_multiple < 1 or min_size < 1:
            raise InputError(f"size_multiple and min_size must be >= 1, got {size_multiple}, {min_size}")
        self.size_multiple, self.min_size = int(size_multiple), max(int(min_size), int(size_multiple))
        self.background = None if background is None else float(background)
        self.complex_parts = bool(complex_parts)
        self.pixel_spacing = None if pixel_spacing is None else tuple(float(s) for s in pixel_spacing)
        for p in self.network.parameters():
            p.requires_grad_(False)
        #: (perm, flips) bringing the volume to the RAS (S, A, R) order the network was trained in
        self.view: tuple[tuple[int, int, int], tuple[int, ...]] | None = None

    def orient(self, affine) -> str | None:
        """Apply the network to the volume's axial slices, anterior up and right to the right, as
        in training, whatever the orientation the data are stored in (from their NIfTI affine);
        results stay on the input's grid. Returns what was done, or None if nothing had to be."""
        from medrecon.io import canonical_view

        perm, flips = canonical_view(affine)
        if perm == (0, 1, 2) and not flips:
            self.view = None
            return None
        self.view, self.slice_axis = (perm, flips), perm[0]
        axes = ", ".join("DHW"[a] for a in perm)
        flipped = f", flipped {', '.join('SAR'[f] for f in flips)}" if flips else ""
        return (
            f"the volume is not stored in RAS order: the prior sees it reoriented (axes {axes} as "
            f"S, A, R{flipped}), as it was trained; the result is on the input's grid"
        )

    @classmethod
    def from_monai(
        cls,
        network: torch.nn.Module,
        scheduler: Any,
        *,
        slice_axis: int = 0,
        slice_batch: int = 8,
        data_range: tuple[float, float] | None = (-1.0, 1.0),
    ) -> NetworkPrior:
        """A prior from a MONAI network and scheduler objects (its noise table and prediction type)."""
        return cls(
            network,
            scheduler.alphas_cumprod,
            prediction=getattr(scheduler, "prediction_type", "epsilon"),
            slice_axis=slice_axis,
            slice_batch=slice_batch,
            data_range=data_range,
        )

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._abar

    def predict_eps(self, x_t: torch.Tensor, t) -> torch.Tensor:
        out = self._per_slice(x_t, int(t))
        if self.prediction == "epsilon":
            return out
        a = self._abar[int(t)]
        if self.prediction == "v_prediction":  # v = sqrt(a) eps - sqrt(1 - a) x0
            return a.sqrt() * out + (1 - a).sqrt() * x_t
        return (x_t - a.sqrt() * out) / (1 - a).sqrt()  # the network predicts x0

    def _per_slice(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if x.is_complex():
            if not self.complex_parts:
                raise InputError(complex_refusal(self))
            parts = self._per_slice(torch.stack([x.real, x.imag]), t)
            return torch.complex(parts[0], parts[1])
        if self.view is not None and x.ndim >= 3:  # to RAS order, through the network, and back
            perm, flips = self.view
            lead = list(range(x.ndim - 3))
            axes = [*lead, *(x.ndim - 3 + p for p in perm)]
            dims = [x.ndim - 3 + f for f in flips]
            canonical = x.permute(*axes)
            canonical = canonical.flip(dims) if dims else canonical
            out = self._network_slices(canonical, t)
            out = out.flip(dims) if dims else out
            inverse = [0] * x.ndim
            for i, a in enumerate(axes):
                inverse[a] = i
            return out.permute(*inverse)
        return self._network_slices(x, t, moved=x.ndim >= 3 and self.slice_axis != 0)

    def _network_slices(self, x: torch.Tensor, t: int, moved: bool = False) -> torch.Tensor:
        """The network on every 2D slice of x along its third-last axis (or `slice_axis`, moved)."""
        if moved:  # bring the slice axis of the volume (the last three axes) to the front of it
            x = x.movedim(x.ndim - 3 + self.slice_axis, x.ndim - 3)
        lead, (h, w) = x.shape[:-2], x.shape[-2:]
        if min(h, w) < self.min_size:
            raise InputError(
                f"slices of {h} x {w} pixels are too small for this prior's network: it needs at least "
                f"{self.min_size} x {self.min_size}"
            )
        slices = x.reshape(-1, 1, h, w)
        pad_h, pad_w = (-h) % self.size_multiple, (-w) % self.size_multiple
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        if pad_h or pad_w:  # reflection keeps the noise statistics of x_t in the margin
            slices = torch.nn.functional.pad(slices, padding, mode="reflect")
        outputs = []
        for start in range(0, slices.shape[0], self.slice_batch):
            chunk = slices[start : start + self.slice_batch]
            steps = torch.full((chunk.shape[0],), t, device=chunk.device, dtype=torch.long)
            outputs.append(self.network(chunk, steps))
        out = torch.cat(outputs)
        if pad_h or pad_w:
            out = out[..., padding[2] : padding[2] + h, padding[0] : padding[0] + w]
        out = out.reshape(*lead, h, w)
        return out.movedim(out.ndim - 3, out.ndim - 3 + self.slice_axis) if moved else out


def complex_refusal(prior: DiffusionPrior) -> str:
    """Why a prior cannot take a complex image, and what would."""
    name = prior.card.get("name") or type(prior).__name__
    return (
        f"prior {name!r} models real images only (its card does not say it was trained on real and "
        "imaginary parts, intensity.complex); for complex images use a prior that was, such as "
        "'brain-1mm', or reconstruct with complex_image = false"
    )


def load_card(weights: str | Path) -> tuple[dict[str, Any], Path]:
    """Find a prior card: a path to the .json, a folder holding one, or a shipped name."""
    return find_card(weights, SHIPPED)


def load_prior(weights: str | Path, slice_axis: int = 0, slice_batch: int = 8) -> NetworkPrior:
    """Load a prior card and its safetensors weights into a NetworkPrior."""
    card, card_path = load_card(weights)
    if card.get("kind") == "conditional":
        raise InputError(
            f"weights {weights!r} are a conditional model ({card.get('method', 'conditional')}), not an "
            "image prior: use them as prior 'conditional' with sampler 'bcdm' or 'diff-unfolding'"
        )
    network = build_unet(card["architecture"])
    load_weights(network, card_path.parent / card["weights"], card_path)
    intensity = card.get("intensity", {})
    card = {"name": card_path.stem, **card}
    multiple = int(card.get("size_multiple") or size_multiple(card["architecture"]))
    spacing = card.get("pixel_spacing_mm")
    return NetworkPrior(
        network,
        schedule_table(card["schedule"]),
        prediction=card.get("prediction", "epsilon"),
        slice_axis=slice_axis,
        slice_batch=slice_batch,
        data_range=tuple(intensity.get("data_range", (-1.0, 1.0))),
        card=card,
        size_multiple=multiple,
        min_size=int(card.get("min_size") or multiple),
        background=intensity.get("background"),
        complex_parts=bool(intensity.get("complex", False)),
        pixel_spacing=None if spacing is None else tuple(spacing),
    )


def is_monai_bundle(path: str | Path) -> bool:
    """A MONAI bundle folder: configs/inference.json (or .yaml) and models/model.pt."""
    root = Path(path)
    has_config = any((root / "configs" / f"inference.{ext}").is_file() for ext in ("json", "yaml", "yml"))
    return root.is_dir() and has_config and (root / "models" / "model.pt").is_file()


def load_bundle_prior(
    path: str | Path,
    slice_axis: int = 0,
    slice_batch: int = 8,
    data_range: tuple[float, float] | None = (-1.0, 1.0),
) -> NetworkPrior:
    """A prior from a MONAI bundle: `network_def` and optionally `noise_scheduler` (or `scheduler`)
    from configs/inference.*, weights from models/model.pt (a state dict; loaded weights-only).
    A bundle's config is executable (it names classes and expressions that are run): load trusted
    bundles only. Latent diffusion bundles (an autoencoder plus a diffusion model in its latent
    space, as MONAI's model-zoo generative bundles are) are refused: medrecon's priors act on images."""
    from monai.bundle import ConfigParser
    from monai.networks.schedulers import DDPMScheduler

    root = Path(path)
    config = next(
        root / "configs" / f"inference.{e}"
        for e in ("json", "yaml", "yml")
        if (root / "configs" / f"inference.{e}").is_file()
    )
    parser = ConfigParser()
    parser.read_config(str(config))
    latent = [
        k for k in ("autoencoder_def", "autoencoder", "latent_shape", "scale_factor") if k in parser.config
    ]
    if latent:
        raise InputError(
            f"bundle {root} is a latent diffusion model ({config.name} defines {', '.join(latent)}): "
            "medrecon's diffusion priors act on images, not on an autoencoder's latent space; "
            "use an image-space diffusion bundle or train one with medrecon train-prior"
        )
    if "network_def" not in parser.config:
        raise InputError(f"bundle {root}: {config.name} has no 'network_def' describing the network")
    network = parser.get_parsed_content("network_def")
    scheduler_key = next((k for k in ("noise_scheduler", "scheduler") if k in parser.config), None)
    scheduler = parser.get_parsed_content(scheduler_key) if scheduler_key else DDPMScheduler(1000)
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise InputError(f"bundle {root}: models/model.pt does not fit network_def ({first})") from None
    prior = NetworkPrior.from_monai(
        network, scheduler, slice_axis=slice_axis, slice_batch=slice_batch, data_range=data_range
    )
    prior.card = {"name": root.name, "source": "MONAI bundle", "config": str(config)}
    return prior


class Diffusion(NetworkPrior):
    """The `diffusion` prior (`kind` "image"; "kernel" for the blur-kernel priors that blind-dps
    loads): weights by shipped name ("brain-1mm": brain MRI at 1 mm, any size,
    real or complex; "brain-axial": axial brain slices at 64 x 64, 2.8 mm), by path to a prior card,
    or a MONAI bundle folder. `data_range` overrides the training intensity range (bundles do not
    state one; the default for them is [-1, 1]). `phase` (complex images): "remove" takes the
    image's smooth background phase out before the prior sees it, estimated from the central
    k-space of a CG estimate, and puts it back after; "keep" gives the prior the real and
    imaginary parts as they are."""

    def __init__(
        self,
        weights: str = "brain-1mm",
        slice_axis: int = 0,
        slice_batch: int = 8,
        data_range: tuple[float, float] | None = None,
        kind: Literal["image", "kernel"] = "image",
        phase: Literal["remove", "keep"] = "remove",
    ):
        if kind not in ("image", "kernel"):
            raise InputError(f"kind must be 'image' or 'kernel', got {kind!r}")
        if phase not in ("remove", "keep"):
            raise InputError(f"phase must be 'remove' or 'keep', got {phase!r}")
        if is_monai_bundle(weights):
            loaded = load_bundle_prior(weights, slice_axis, slice_batch, data_range or (-1.0, 1.0))
        else:
            loaded = load_prior(weights, slice_axis, slice_batch)
            if card_kind(loaded.card) != kind:
                what = {"image": "an image prior", "kernel": "a blur-kernel prior"}
                raise InputError(
                    f"weights {weights!r} are {what[card_kind(loaded.card)]}, not {what[kind]}"
                    + (": give them to blind-dps as kernel_prior" if kind == "image" else "")
                )
            if data_range is not None:
                if len(data_range) != 2 or not float(data_range[0]) < float(data_range[1]):
                    raise InputError(
                        f"data_range must be [low, high] with low < high, got {list(data_range)}"
                    )
                loaded.data_range = (float(data_range[0]), float(data_range[1]))
        super().__init__(
            loaded.network,
            loaded.alphas_cumprod,
            prediction=loaded.prediction,
            slice_axis=slice_axis,
            slice_batch=slice_batch,
            data_range=loaded.data_range,
            card=loaded.card,
            size_multiple=loaded.size_multiple,
            min_size=loaded.min_size,
            background=loaded.background,
            complex_parts=loaded.complex_parts,
            pixel_spacing=loaded.pixel_spacing,
        )
        self.remove_phase = phase == "remove"
