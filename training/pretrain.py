"""Pretrain the demo model from a YAML recipe.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python training/pretrain.py \
        --recipe training/recipes/demo_pretrain.yaml --output-dir artifacts/demo-model

`--set key=value` overrides any recipe field (values parsed as YAML, e.g.
`--set lr=1e-3 --set spec.num_layers=2`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from chatstack.model.pretrain import PretrainConfig, main
from chatstack.recipes import load_recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, required=True, help="YAML file of PretrainConfig fields")
    parser.add_argument("--output-dir", type=Path, help="overrides the recipe's output_dir")
    parser.add_argument("--time-budget-s", type=float, help="overrides the recipe's time_budget_s")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one recipe field; dotted keys reach into spec")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> PretrainConfig:
    recipe = load_recipe(args.recipe, args.overrides)
    if args.output_dir is not None:
        recipe["output_dir"] = args.output_dir
    if args.time_budget_s is not None:
        recipe["time_budget_s"] = args.time_budget_s
    return PretrainConfig.from_dict(recipe)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(main(load_config(parse_args())))
