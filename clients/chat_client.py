"""Terminal chat with a running chatstack server over the gRPC stream.

    python clients/chat_client.py --session alice --temperature 0.7
    python clients/chat_client.py --once "What is a generator?" --no-stream

As a library: `from chat_client import ChatClient, ChatOptions` (re-exported from chatstack.client).
"""

from __future__ import annotations

import argparse
import sys

from chatstack.client import ChatClient, ChatError, ChatOptions, ChatReply
from chatstack.terminal import run_chat_loop

__all__ = ["ChatClient", "ChatError", "ChatOptions", "ChatReply", "main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    p.add_argument("--session", help="session id: the server keeps this conversation's history")
    p.add_argument("--system-prompt")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--quote-bound", choices=["on", "off"],
                   help="quote-bound decoding over the retrieved passages (default: the deployment's)")
    p.add_argument("--no-stream", action="store_true", help="receive each answer in one response")
    p.add_argument("--once", help="ask one question and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = ChatOptions(
        session_id=args.session, system_prompt=args.system_prompt, max_tokens=args.max_tokens,
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed,
        stop_words=tuple(args.stop), quote_bound=None if args.quote_bound is None else args.quote_bound == "on",
    )
    return run_chat_loop(args.url, once=args.once, options=options, stream=not args.no_stream)


if __name__ == "__main__":
    sys.exit(main())
