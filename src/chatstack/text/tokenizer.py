"""Loading the served model's tokenizer and limits from an HF-format folder."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from chatstack.text.chat_template import EOS, END_OF_TURN


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


def model_context_window(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config["max_position_embeddings"])


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """End of turn and end of text both end a reply."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in (END_OF_TURN, EOS)}
    return tuple(sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id))
