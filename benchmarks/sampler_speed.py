"""Sampler speed on one volume: seconds, NFE, and the share of wall time spent inside the network.

    python benchmarks/sampler_speed.py [--json PATH] [--device cpu|cuda] [--steps N] [--size D H W]

The network is a MONAI DiffusionModelUNet of the architecture medrecon trains on a CPU
(channels 32-64-64, attention at the lowest level), randomly initialised: the time a sampler
spends outside the network does not depend on the weights. Problem: 8-coil 4x MRI of a Shepp-Logan
volume. Network time is measured by forward hooks (CUDA-synchronised on a GPU). Peak memory is
torch's peak allocation on CUDA, or the process's peak resident set on the CPU (cumulative over rows).
`network_share` counts forward calls; `with_backward` adds the backward passes through the network
(gradient-guided samplers). Targets: >= 90% of wall time inside the network for DDS and DiffusionMBIR.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

import medrecon
from medrecon.prior_card import build_unet, schedule_table
from medrecon.samples import phantom_volume
from medrecon.training import CPU_ARCHITECTURE
from medrecon_priors import NetworkPrior
from medrecon_samplers import DDS, DPS, DiffusionMBIR, PiGDM

ARCH = CPU_ARCHITECTURE  # the architecture medrecon train-prior uses on a CPU


class NetworkClock:
    """Accumulates the seconds spent inside a module's forward calls, and in its backward passes
    (the vector-Jacobian products of gradient-guided samplers) separately."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.seconds, self.backward, self.calls, self.device = 0.0, 0.0, 0, device
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)
        module.register_full_backward_pre_hook(self._start_backward)
        module.register_full_backward_hook(self._stop_backward)

    def _start_backward(self, module, grad_output):
        self._sync()
        self._b0 = time.perf_counter()

    def _stop_backward(self, module, grad_input, grad_output):
        self._sync()
        self.backward += time.perf_counter() - self._b0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self, module, inputs):
        self._sync()
        self._t0 = time.perf_counter()

    def _stop(self, module, inputs, output):
        self._sync()
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write the rows as a JSON list to this path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50, help="diffusion steps per sampler (NFE for DDS)")
    parser.add_argument("--size", type=int, nargs=3, default=[8, 64, 64], metavar=("D", "H", "W"))
    parser.add_argument("--slice-batch", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    network = build_unet(ARCH).to(device)
    prior = NetworkPrior(
        network, schedule_table({"num_train_timesteps": 1000}), slice_batch=args.slice_batch
    ).to(device)
    clock = NetworkClock(network, device)
    truth = phantom_volume(tuple(args.size))
    m = medrecon.simulate(
        truth, {"name": "mri-multicoil", "coils": 8, "acceleration": 4}, noise_std=0.01, seed=0
    )
    op = medrecon.build_operator(m.operator, arrays=m.arrays).to(device)
    problem = medrecon.Problem(op, torch.as_tensor(m.y).to(device), 0.01)
    samplers = {
        "dds": DDS(steps=args.steps),
        "diffusion-mbir": DiffusionMBIR(steps=args.steps),
        "pigdm": PiGDM(steps=args.steps),
        "dps": DPS(steps=args.steps),
    }
    with torch.no_grad():  # warm-up (first calls allocate and pick kernels), not timed
        DDS(steps=2).run(problem, prior, seed=0)
    rows = []
    for name, sampler in samplers.items():
        clock.seconds, clock.backward, clock.calls = 0.0, 0.0, 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        with torch.no_grad():
            result = sampler.run(problem, prior, seed=0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        seconds = time.perf_counter() - start
        rows.append(
            {
                "sampler": name,
                "volume": "x".join(map(str, args.size)),
                "seconds": round(seconds, 3),
                "nfe": result.info["nfe"],
                "network_calls": clock.calls,
                "network_share": round(clock.seconds / seconds, 4),
                "with_backward": round((clock.seconds + clock.backward) / seconds, 4),
                "peak_mb": round(peak_mb, 1),
            }
        )
    cols = list(rows[0])
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]!s:>14}" for c in cols))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
