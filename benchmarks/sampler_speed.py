"""Diffusion cost at the sizes users bring: the network per slice and per voxel, the samplers' share
of time inside the network, and peak memory of a clinical-size volume.

    python benchmarks/sampler_speed.py [--json PATH] [--device cpu|cuda] [--sizes 64 128 256 320]
                                       [--depth D] [--steps N] [--memory-volume D H W] [--quick]

1. Network: the architecture of the shipped native-resolution prior (`train-prior --native`: a
   fully convolutional MONAI DiffusionModelUNet), randomly initialised (cost does not depend on the
   weights), one forward pass per call with the same number of voxels per call at every size
   (16 slices of 64 x 64 = 1 of 256 x 256; 320 x 320 is one slice). Reported: ms per slice per
   network evaluation (NFE), ns per voxel, and the per-voxel ratio to the smallest size. For the
   architecture of the 64 x 64 `brain-axial` prior (attention at its lowest level and in MONAI's
   middle block) is timed the same way. Median of 5 calls after a warm-up.
2. Samplers: DDS and DiffusionMBIR (the slice-diffusion volume samplers) on 8-coil 4x MRI of a
   (depth, S, S) Shepp-Logan volume at each size: seconds, seconds per slice per NFE and the share
   of wall time spent inside the network (forward hooks, CUDA-synchronised on a GPU); DPS and PiGDM
   (gradient-guided) at the first size. Target: a share of at least 0.9 for DDS and DiffusionMBIR.
3. Memory: a DDS run on a `--memory-volume` (default 32 x 256 x 256) in a fresh process, its peak
   resident set (CPU) or peak CUDA allocation. Target on the CPU: below 4 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import medrecon
from medrecon.apps.training import CPU_ARCHITECTURE, NATIVE_ARCHITECTURE
from medrecon.prior_card import build_unet, schedule_table
from medrecon.samples import phantom_volume
from medrecon_priors import NetworkPrior
from medrecon_samplers import DDS, DPS, DiffusionMBIR, PiGDM

VOXELS_PER_CALL = 16 * 64 * 64


class NetworkClock:
    """Accumulates the seconds spent inside a module's forward calls, and in its backward passes
    (the vector-Jacobian products of gradient-guided samplers) separately."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.seconds, self.backward, self.calls, self.device = 0.0, 0.0, 0, device
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)
        module.register_full_backward_pre_hook(self._start_backward)
        module.register_full_backward_hook(self._stop_backward)

    def reset(self) -> None:
        self.seconds, self.backward, self.calls = 0.0, 0.0, 0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start_backward(self, module, grad_output):
        self._sync()
        self._b0 = time.perf_counter()

    def _stop_backward(self, module, grad_input, grad_output):
        self._sync()
        self.backward += time.perf_counter() - self._b0

    def _start(self, module, inputs):
        self._sync()
        self._t0 = time.perf_counter()

    def _stop(self, module, inputs, output):
        self._sync()
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1


def prior_of(architecture: dict, device: torch.device, slice_batch: int) -> NetworkPrior:
    torch.manual_seed(0)
    network = build_unet(architecture).to(device)
    return NetworkPrior(
        network, schedule_table({"num_train_timesteps": 1000}), slice_batch=slice_batch, background=0.0
    ).to(device)


def network_rows(sizes: list[int], device: torch.device) -> list[dict]:
    rows = []
    for label, arch in (
        ("native (conv only)", NATIVE_ARCHITECTURE),
        ("brain-axial (attention)", CPU_ARCHITECTURE),
    ):
        network = build_unet(arch).to(device).eval()
        base = None
        for size in sizes:
            batch = max(1, VOXELS_PER_CALL // size**2)
            multiple = 2 ** (len(arch["channels"]) - 1)
            side = -(-size // multiple) * multiple
            x = torch.randn(batch, 1, side, side, device=device)
            t = torch.full((batch,), 500, device=device)
            times = []
            with torch.no_grad():
                network(x, t)
                for _ in range(5):
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    start = time.perf_counter()
                    network(x, t)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            per_voxel = seconds / (batch * size * size)
            base = base or per_voxel
            rows.append(
                {
                    "part": "network",
                    "network": label,
                    "size": f"{size}x{size}",
                    "slices_per_call": batch,
                    "ms_per_slice_per_nfe": round(1000 * seconds / batch, 2),
                    "ns_per_voxel": round(1e9 * per_voxel, 1),
                    "per_voxel_vs_smallest": round(per_voxel / base, 3),
                }
            )
    return rows


def sampler_rows(sizes, depth, steps, device, slice_batch) -> list[dict]:
    prior = prior_of(NATIVE_ARCHITECTURE, device, slice_batch)
    clock = NetworkClock(prior.network, device)
    rows = []
    for n, size in enumerate(sizes):
        truth = phantom_volume((depth, size, size))
        m = medrecon.simulate(truth, {"name": "mri-multicoil", "coils": 8, "acceleration": 4}, noise_std=0.01)
        op = medrecon.build_operator(m.operator, arrays=m.arrays).to(device)
        problem = medrecon.Problem(op, torch.as_tensor(m.y).to(device), 0.01)
        samplers = {"dds": DDS(steps=steps), "diffusion-mbir": DiffusionMBIR(steps=steps)}
        if n == 0:
            samplers.update(pigdm=PiGDM(steps=steps), dps=DPS(steps=steps))
        with torch.no_grad():  # warm-up (first calls allocate and pick kernels), not timed
            DDS(steps=2).run(problem, prior, seed=0)
        for name, sampler in samplers.items():
            clock.reset()
            start = time.perf_counter()
            with torch.no_grad():
                result = sampler.run(problem, prior, seed=0)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "part": "sampler",
                    "sampler": name,
                    "volume": f"{depth}x{size}x{size}",
                    "seconds": round(seconds, 2),
                    "nfe": result.info["nfe"],
                    "s_per_slice_per_nfe": round(seconds / (depth * result.info["nfe"]), 4),
                    "network_share": round(clock.seconds / seconds, 4),
                    "with_backward": round((clock.seconds + clock.backward) / seconds, 4),
                }
            )
    return rows


def memory_run(shape: list[int], device: str, steps: int, slice_batch: int) -> None:
    """In a fresh process: one DDS run on a volume of `shape`; prints its peak memory in MB as JSON."""
    dev = torch.device(device)
    prior = prior_of(NATIVE_ARCHITECTURE, dev, slice_batch)
    truth = phantom_volume(tuple(shape))
    m = medrecon.simulate(truth, {"name": "mri-multicoil", "coils": 8, "acceleration": 4}, noise_std=0.01)
    op = medrecon.build_operator(m.operator, arrays=m.arrays).to(dev)
    problem = medrecon.Problem(op, torch.as_tensor(m.y).to(dev), 0.01)
    start = time.perf_counter()
    with torch.no_grad():
        DDS(steps=steps, tv_z=0.002).run(problem, prior, seed=0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": round(peak, 1), "seconds": round(time.perf_counter() - start, 1)}))


def print_table(rows: list[dict]) -> None:
    cols = [c for c in rows[0] if c != "part"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write the rows as a JSON list to this path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 320])
    parser.add_argument("--depth", type=int, default=4, help="slices of the sampler volumes")
    parser.add_argument("--steps", type=int, default=50, help="diffusion steps per sampler (NFE for DDS)")
    parser.add_argument("--slice-batch", type=int, default=8)
    parser.add_argument("--memory-volume", type=int, nargs=3, default=[32, 256, 256], metavar=("D", "H", "W"))
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes and few steps (smoke test)")
    parser.add_argument("--memory-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        return memory_run(args.memory_volume, args.device, args.memory_steps, args.slice_batch)
    if args.quick:
        args.sizes, args.depth, args.steps, args.memory_volume = [32, 64], 2, 2, [4, 64, 64]
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    network = network_rows(args.sizes, device)
    print_table(network)
    samplers = sampler_rows(args.sizes, args.depth, args.steps, device, args.slice_batch)
    print_table(samplers)
    command = [
        sys.executable,
        __file__,
        "--memory-run",
        "--device",
        args.device,
        "--slice-batch",
        str(args.slice_batch),
    ]
    command += ["--memory-volume", *map(str, args.memory_volume), "--memory-steps", str(args.memory_steps)]
    measured = json.loads(
        subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    )
    memory = [
        {
            "part": "memory",
            "sampler": "dds + TV-z",
            "volume": "x".join(map(str, args.memory_volume)),
            "device": args.device,
            "peak_mb": measured["peak_mb"],
            "seconds": measured["seconds"],
            "steps": args.memory_steps,
        }
    ]
    print_table(memory)
    big = [r for r in network if r["network"].startswith("native") and r["size"] == "256x256"]
    if big:
        ratio = big[0]["per_voxel_vs_smallest"]
        print(f"native network, per-voxel cost 256^2 / {args.sizes[0]}^2 at equal voxels per call: {ratio}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(network + samplers + memory, fh, indent=2)


if __name__ == "__main__":
    main()
