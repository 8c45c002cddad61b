"""Fine-tune (SFT) or align (DPO) a model from a YAML recipe.

    python training/align.py sft --recipe training/recipes/demo_sft.yaml
    python training/align.py dpo --recipe training/recipes/demo_dpo.yaml --set beta=0.2

`--set key=value` overrides any recipe field (dotted keys reach nested tables such as
`weights.safety` or `mix.unanswerable`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from chatstack.recipes import load_recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["sft", "dpo"])
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipe = load_recipe(args.recipe, args.overrides)
    if args.stage == "sft":
        from chatstack.alignment.sft import SFTRecipe, main as run
        return run(SFTRecipe.from_dict(recipe))
    from chatstack.alignment.dpo import DPORecipe, main as run
    return run(DPORecipe.from_dict(recipe))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(json.dumps(main(), indent=2))
