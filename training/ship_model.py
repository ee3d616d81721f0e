"""Copy a trained model into models/ and record its SHA-256 in models/registry.json.

    python training/ship_model.py training/runs/deface/model.safetensors --name deface \
        --file deface_unet.safetensors --card deface_unet.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent / "models"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="trained model file")
    parser.add_argument("--name", required=True, help="registry name, e.g. deface")
    parser.add_argument("--file", required=True, help="file name inside models/")
    parser.add_argument("--card", help="model card file name inside models/")
    parser.add_argument(
        "--status",
        help="record a status in the model's metadata (e.g. experimental); loaders warn unless 'validated'",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="text models: the probability from which a pixel is text, chosen on held-out images "
        "(load_text_detector's default for this file)",
    )
    parser.add_argument(
        "--grow-threshold",
        type=float,
        help="text models: the lower probability to which text blobs grow (hysteresis), chosen on "
        "held-out images (load_text_detector's default for this file)",
    )
    args = parser.parse_args(argv)
    dst = MODELS / args.file
    extra = {
        **({"status": args.status} if args.status else {}),
        **({"threshold": args.threshold} if args.threshold is not None else {}),
        **({"grow_threshold": args.grow_threshold} if args.grow_threshold is not None else {}),
    }
    if extra:
        from deephealth_deid.engines import get_engine

        engine = get_engine("torch", device="cpu")
        model, spec, metadata = engine.load(args.model)
        engine.save(model, spec, dst, metadata={**metadata, **extra}, overwrite=True)
    else:
        shutil.copyfile(args.model, dst)
    sha = hashlib.sha256(dst.read_bytes()).hexdigest()
    registry_path = MODELS / "registry.json"
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {}
    registry[args.name] = {"file": args.file, "sha256": sha, **({"card": args.card} if args.card else {})}
    registry_path.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    print(f"{dst} sha256 {sha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
