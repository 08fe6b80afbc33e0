"""medrecon inside MONAI pipelines: LoadImaged -> ... -> SimulateMeasurementd -> Reconstructd."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.metrics import SSIMMetric
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, ScaleIntensityd, Spacingd

import medrecon
from medrecon.monai import Reconstruct, Reconstructd, SimulateMeasurement, SimulateMeasurementd

MRI = {"name": "mri-multicoil", "acceleration": 4, "coils": 8}
DDS = {
    "sampler": {"name": "dds"},
    "prior": {"name": "gaussian", "correlation": 1.0, "variance": 0.1, "mean": 0.2},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from medrecon.samples import phantom_volume

    folder = tmp_path_factory.mktemp("volumes")
    out = []
    for i in range(3):
        affine = np.diag([1.0, 1.0, 2.0, 1.0])
        affine[:3, 3] = [i, -5.0, 10.0]
        path = folder / f"vol{i}.nii.gz"
        nib.save(
            nib.Nifti1Image((phantom_volume((8, 32, 32)) * (1 + i)).transpose(2, 1, 0), affine), str(path)
        )
        out.append({"image": str(path)})
    return out


def pipeline(recipe=DDS, seed=0):
    return Compose(
        [
            LoadImaged(keys="image"),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS", labels=None),
            Spacingd(keys="image", pixdim=(1.0, 1.0, 2.0)),
            ScaleIntensityd(keys="image"),
            SimulateMeasurementd(keys="image", operator=MRI, noise_std=0.01, seed=seed),
            Reconstructd(
                keys="image_measurement",
                recipe={"sampler": {"name": "adjoint"}},
                output_key="zero_filled",
                drop_measurement=False,
            ),
            Reconstructd(keys="image_measurement", recipe=recipe),
        ]
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_pipeline_in_a_dataloader_beats_zero_filling_and_keeps_metadata(files, workers):
    loader = DataLoader(Dataset(files, transform=pipeline()), batch_size=1, num_workers=workers)
    ssim = SSIMMetric(spatial_dims=3, data_range=1.0, win_size=7)
    seen = 0
    for batch in loader:
        image, recon, zero_filled = batch["image"], batch["reconstruction"], batch["zero_filled"]
        assert recon.shape == image.shape == (1, 1, 32, 32, 8)
        torch.testing.assert_close(recon.affine, image.affine)  # placed exactly over the input
        assert ssim(recon, image).item() > ssim(zero_filled, image).item() + 0.1  # measured 0.84 vs 0.6
        assert "image_measurement" not in batch  # dropped: only tensors reach the collation
        seen += 1
    assert seen == 3


def test_the_same_seed_gives_the_same_result(files):
    a = pipeline(seed=3)(files[0])["reconstruction"]
    b = pipeline(seed=3)(files[0])["reconstruction"]
    c = pipeline(seed=4)(files[0])["reconstruction"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_several_samples_give_a_std_map(files):
    recipe = {**DDS, "sampler": {"name": "dds", "steps": 10, "samples": 3}}
    out = pipeline(recipe)(files[1])
    assert out["reconstruction_std"].shape == out["reconstruction"].shape
    assert float(out["reconstruction_std"].mean()) > 0


def test_array_transforms(files):
    data = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image")])(files[0])
    measurement = SimulateMeasurement(MRI, noise_std=0.01)(data["image"])
    assert isinstance(measurement, medrecon.Measurement) and measurement.y.shape == (8, 8, 32, 32)
    recon = Reconstruct({"sampler": {"name": "cg"}})(measurement)
    assert recon.shape == data["image"].shape and torch.allclose(recon.affine, data["image"].affine)


def test_missing_keys_are_named_unless_allowed():
    transform = SimulateMeasurementd(keys="image", operator=MRI, noise_std=0.01)
    with pytest.raises(KeyError, match="image"):
        transform({"label": torch.zeros(1, 8, 8, 4)})
    assert SimulateMeasurementd(keys="image", operator=MRI, noise_std=0.01, allow_missing_keys=True)(
        {"x": 1}
    ) == {"x": 1}


def test_bad_data_gets_errors_naming_the_key():
    no_channel = {"image": torch.rand(32, 32, 8)}
    with pytest.raises(
        medrecon.InputError, match="key 'image'.*must be channel-first with one channel.*EnsureChannelFirstd"
    ):
        SimulateMeasurementd(keys="image", operator=MRI, noise_std=0.01)(no_channel)
    ct = SimulateMeasurementd(keys="image", operator={"name": "ct-parallel", "views": 8}, noise_std=0.01)
    rectangular = ct({"image": torch.rand(1, 32, 30, 4)})["image_measurement"]  # any slice shape is fine
    assert rectangular.y.shape == (4, 8, 44)  # 44 detectors: the slice's diagonal
    with pytest.raises(medrecon.InputError, match=r"key 'image'.*NaN or Inf values"):
        ct({"image": torch.full((1, 32, 30, 4), float("nan"))})
    with pytest.raises(medrecon.InputError, match="key 'm'.*must hold a medrecon Measurement"):
        Reconstructd(keys="m", recipe={"sampler": {"name": "cg"}})({"m": torch.zeros(3)})
    with pytest.raises(medrecon.RecipeError, match="no sampler named 'dsd'"):
        Reconstructd(keys="m", recipe={"sampler": {"name": "dsd"}})(
            {"m": SimulateMeasurement(MRI, noise_std=0.01)(torch.rand(1, 32, 32, 4))}
        )


def test_each_item_gets_its_own_noise_and_the_pipeline_is_reproducible():
    """SimulateMeasurement is a MONAI random transform: two identical images get different noise,
    and a fixed random state reproduces the pipeline."""
    from monai.data import MetaTensor
    from monai.utils import set_determinism

    image = MetaTensor(torch.ones(1, 16, 16, 2))
    sim = SimulateMeasurementd(keys="image", operator=MRI, noise_std=0.05)
    first, second = sim({"image": image}), sim({"image": image})
    assert not np.allclose(first["image_measurement"].y, second["image_measurement"].y)
    set_determinism(seed=7)
    try:
        a = Compose([SimulateMeasurementd(keys="image", operator=MRI, noise_std=0.05)])({"image": image})
        set_determinism(seed=7)
        b = Compose([SimulateMeasurementd(keys="image", operator=MRI, noise_std=0.05)])({"image": image})
    finally:
        set_determinism(seed=None)
    np.testing.assert_array_equal(a["image_measurement"].y, b["image_measurement"].y)
    blur = SimulateMeasurement({"name": "blind-deconv", "kernel_type": "motion"}, 0.0)
    kernels = [blur(image).arrays["kernel"] for _ in range(2)]
    assert not np.allclose(*kernels)  # the operator's own seed is drawn per item too


def test_the_reconstruction_keeps_the_input_meta_for_saveimaged(files, tmp_path):
    from monai.transforms import SaveImaged

    steps = Compose(
        [
            LoadImaged(keys=["image", "other"]),
            EnsureChannelFirstd(keys=["image", "other"]),
            SimulateMeasurementd(keys=["image", "other"], operator=MRI, noise_std=0.01),
            Reconstructd(keys=["image_measurement", "other_measurement"], recipe={"sampler": {"name": "cg"}}),
            SaveImaged(
                keys="image_measurement_reconstruction",
                output_dir=str(tmp_path),
                output_postfix="recon",
                separate_folder=False,
            ),
        ]
    )
    out = steps({"image": files[0]["image"], "other": files[1]["image"]})
    assert set(out) >= {"image_measurement_reconstruction", "other_measurement_reconstruction"}
    recon = out["image_measurement_reconstruction"]
    assert recon.meta["filename_or_obj"] == files[0]["image"]
    assert (tmp_path / "vol0_recon.nii.gz").is_file()
    np.testing.assert_allclose(recon.affine, out["image"].affine)
