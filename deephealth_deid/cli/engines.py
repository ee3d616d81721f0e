"""``deid engines``: which compute engines are usable here, on which devices, and how EDDL checks out."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ._common import make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "engines",
        "List the compute engines (PyTorch, EDDL, ONNX Runtime): whether each imports, its version, the "
        "devices it can use, and for EDDL the start-up self-check (the known CPU defects of the build "
        "and whether the engine's networks compute correctly on it).",
    )
    parser.add_argument("--device", default="cpu", help="device to check EDDL on (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def describe(device: str = "cpu") -> dict[str, dict[str, object]]:
    """Facts about each engine, as ``deid engines`` prints them."""
    from ..engines import ENGINE_NAMES, get_engine
    from ..errors import DeidError

    out: dict[str, dict[str, object]] = {}
    for name in ENGINE_NAMES:
        facts: dict[str, object] = {}
        try:
            engine = get_engine(name, device=device)
        except DeidError as e:
            out[name] = {"usable": False, "why": str(e)}
            continue
        facts["usable"] = True
        facts["device"] = engine.device
        if name == "torch":
            import torch

            facts["version"] = torch.__version__
            facts["cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
        elif name == "onnxruntime":
            import onnxruntime

            facts["version"] = engine.version
            facts["providers"] = onnxruntime.get_available_providers()
            facts["trains"] = False
        else:
            check = engine.check
            facts["version"] = engine.version
            facts["defects"] = check.defects
            facts["networks_correct"] = check.ok
            facts["largest_relative_logit_error"] = float(f"{check.unet_error:.3g}")
        out[name] = facts
    return out


def _engines(args: argparse.Namespace) -> int:
    facts = describe(args.device)
    if args.json:
        print(json.dumps(facts))
        return 0
    for name, info in facts.items():
        if not info["usable"]:
            print(f"{name}: not usable: {info['why']}")
            continue
        details = ", ".join(f"{k} {v}" for k, v in info.items() if k != "usable")
        print(f"{name}: usable ({details})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid engines``; returns the exit code."""
    return run(build_parser(), argv, _engines)
