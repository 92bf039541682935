"""``geoplant modelinfo``: a model's card, readable (geoplant:modelinfo's log lines) or as JSON."""

from __future__ import annotations

import argparse
from typing import Any

from .common import HelpFormatter, TerminalProgress, model_path


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "modelinfo",
        help="a model's card: species, inputs, variables, normalisation, default grid",
        description="Shows the geoplant-onnx/1 card of an ONNX model (checked against its graph): "
        "readable lines, or the whole card as JSON. Like geoplant:modelinfo.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", metavar="M.onnx", help="the .onnx model (default: the bundled demo model)")
    p.add_argument("--json", action="store_true", help="print the card as JSON instead of readable lines")
    p.add_argument("--output-json", metavar="FILE", help="also save the card as JSON to FILE")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, progress: TerminalProgress) -> int:
    from ..core.cardtext import describe_card
    from ..core.files import Publication, check_outputs
    from ..core.modelcard import read_model_card

    model = model_path(args.model)
    if args.output_json:  # refused before anything is read or written
        check_outputs({"OUTPUT_JSON": args.output_json}, {"MODEL": model})
    card = read_model_card(model)
    text = card.to_json(indent=2)
    if args.json:
        print(text)
    else:
        for line in describe_card(card):
            print(line)
    if args.output_json:
        with Publication(progress) as publication:
            publication.write_text(publication.temporary(args.output_json), text + "\n")
            progress.check_cancelled()
            publication.publish()
    return 0
