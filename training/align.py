"""Fine-tune (SFT), align (DPO), train a reward model, or run GRPO from a YAML recipe.

    python training/align.py sft --recipe training/recipes/demo_sft.yaml
    python training/align.py dpo --recipe training/recipes/demo_dpo.yaml --set beta=0.2
    python training/align.py reward --recipe training/recipes/demo_reward.yaml
    python training/align.py grpo --recipe training/recipes/demo_grpo.yaml

`--set key=value` overrides any recipe field (dotted keys reach nested tables such as
`weights.safety` or `mix.unanswerable`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path

from chatstack.recipes import load_recipe

# stage -> (module, recipe class); imported only when the stage runs
STAGES = {
    "sft": ("chatstack.alignment.sft", "SFTRecipe"),
    "dpo": ("chatstack.alignment.dpo", "DPORecipe"),
    "reward": ("chatstack.alignment.reward", "RewardRecipe"),
    "grpo": ("chatstack.alignment.grpo", "GRPORecipe"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipe = load_recipe(args.recipe, args.overrides)
    module_name, recipe_class = STAGES[args.stage]
    module = importlib.import_module(module_name)
    return module.main(getattr(module, recipe_class).from_dict(recipe))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(json.dumps(main(), indent=2))
