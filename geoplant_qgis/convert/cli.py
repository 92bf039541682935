"""Command line: ``python -m geoplant_qgis.convert malpolon --checkpoint CKPT --preset glc24
--output OUT.onnx [--species SPECIES_CSV] [--num-classes N]``.

Exit status 0 when the model was written and verified, 1 for a refusal (the message says
why), 2 for wrong arguments, 3 for an unexpected error (its traceback goes to the plugin's
error log, not to the terminal).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

USAGE_EXAMPLE = (
    "example: python -m geoplant_qgis.convert malpolon --checkpoint mme.ckpt --preset glc24 "
    "--species species.csv --output mme_glc24.onnx"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m geoplant_qgis.convert",
        description="Convert a PyTorch checkpoint into a geoplant-onnx/1 model for the GeoPlant QGIS plugin.",
        epilog=USAGE_EXAMPLE,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    m = sub.add_parser(
        "malpolon",
        help="GeoPlant's multimodal ensemble (malpolon glc24_multimodal_ensemble), .ckpt or .pth",
        description="GeoPlant's multimodal ensemble (Landsat cube, climate cube, Sentinel-2 patch) "
        "from a Lightning .ckpt or a plain .pth state dict.",
        epilog=USAGE_EXAMPLE,
    )
    m.add_argument("--checkpoint", required=True, help="Lightning .ckpt or torch.save(state_dict) .pth")
    m.add_argument(
        "--preset",
        required=True,
        choices=("glc24", "glc25"),
        help="the preprocessing the model was trained with",
    )
    m.add_argument("--output", required=True, help="the .onnx file to write")
    m.add_argument("--species", help="CSV speciesId,name (default names 'species <id>')")
    m.add_argument(
        "--num-classes", type=int, help="number of species (default: rows of the checkpoint's fc2)"
    )
    m.add_argument("--name", default="", help="the model's name in its card")
    m.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "malpolon", "torchvision", "torch"),
        help="which definition of the network to load the weights into (auto: malpolon, else "
        "torchvision, else the converter's own torch-only layers)",
    )
    m.add_argument("--tolerance", type=float, default=1e-4, help="largest probability difference accepted")
    return parser


def _say(message: str) -> None:
    print(message, flush=True)


def convert_malpolon(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..core.errors import MissingDependencyError

        raise MissingDependencyError(
            "The converter needs PyTorch: .venv/bin/python -m pip install -c constraints.txt "
            "-r tools/requirements-convert.txt"
        ) from None
    from . import checkpoint, presets, species
    from . import malpolon as mme
    from .api import export
    from .errors import ConversionError

    output = os.path.abspath(args.output)
    if os.path.abspath(args.checkpoint) == output:
        raise ConversionError("--output is the checkpoint itself: give another file name.")
    if not output.lower().endswith(".onnx"):
        raise ConversionError(f"--output must name an .onnx file, not {args.output}.")
    start = time.perf_counter()
    ckpt = checkpoint.load(args.checkpoint)
    source = f"'{os.path.basename(args.checkpoint)}'"
    mme.check_architecture(ckpt.state_dict, source)
    classes = mme.num_classes_of(ckpt.state_dict)
    if args.num_classes is not None and args.num_classes != classes:
        raise ConversionError(
            f"--num-classes {args.num_classes} does not match the checkpoint, "
            f"whose fc2 predicts {classes} species."
        )
    names = species.read_names(args.species, classes) if args.species else {}
    model, backend = mme.build(classes, args.backend)
    mme.load_weights(model, ckpt.state_dict, source)
    _say(
        f"{source}: {ckpt.layout} checkpoint, {len(ckpt.state_dict)} tensors, {classes:,} species; "
        f"network built with {backend}"
    )
    card = presets.card(args.preset, classes, names, args.name)
    report = export(model, card, output, tolerance=args.tolerance, log=_say)
    _say(
        f"wrote {report.output} ({report.bytes / 1e6:,.1f} MB, preset {args.preset}, "
        f"{len(names):,} species names from the CSV) in {time.perf_counter() - start:.0f} s"
    )
    return 0


def main(argv=None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse printed its message
        return int(exit_.code or 0) and 2
    from ..core.errors import GeoPlantError

    try:
        return convert_malpolon(args)
    except GeoPlantError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory while converting the model.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written.", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a bug: words here, details in the log
        from ..core.errors import log_unexpected

        where = log_unexpected(error, "geoplant_qgis.convert")
        print(
            f"error: unexpected {type(error).__name__}: {str(error)[:300]}"
            + (f" (details in {where})" if where else ""),
            file=sys.stderr,
        )
        return 3
