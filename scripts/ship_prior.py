"""Copy a trained prior (card + EMA weights) into the package, its weights as float16.

    python scripts/ship_prior.py TRAINED_CARD.json plugins/medrecon_priors/weights/NAME

float16 halves the wheel's size; the loader casts the weights back to float32 (measured on
brain-1mm at 3000 steps: the largest change in a network output is 6e-5 of its range, on noise
at t = 10, 300 and 900).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main(source: str, target: str) -> None:
    card_path = Path(source)
    card = json.loads(card_path.read_text())
    weights = load_file(str(card_path.parent / card["weights"]))
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    target_path = Path(target)
    save_file(half, str(target_path.with_suffix(".safetensors")))
    target_path.with_suffix(".safetensors").chmod(0o644)  # safetensors writes through a private temp file
    card["weights"] = target_path.with_suffix(".safetensors").name
    card["weights_dtype"] = "float16 (trained in float32; cast back to float32 on loading)"
    target_path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    count = sum(v.numel() for v in half.values())
    print(f"wrote {target_path.with_suffix('.json')} and {card['weights']}: {count} values")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main(*sys.argv[1:3])
