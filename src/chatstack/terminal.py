"""Interactive terminal chat over the gRPC stream: tokens print as they arrive."""

from __future__ import annotations

import sys

from chatstack.client import ChatClient, ChatError, ChatOptions


def ask(client: ChatClient, text: str, options: ChatOptions, stream: bool = True) -> str:
    """Print one streamed answer; return its finish reason."""
    finish = ""
    for part in client.stream(text, options, stream=stream):
        print(part.text, end="", flush=True)
        if part.finish_reason:
            finish = part.finish_reason
            print(flush=True)
            for c in part.citations:
                section = f" § {c['section']}" if c.get("section") else ""
                print(f"  [{c['n']}] {c['source']}{section} ({c['score']:.2f})")
            if part.citations:
                print(f"  grounded: {'yes' if part.grounded else 'no'} ({part.grounding_score:.2f})")
    return finish


def run_chat_loop(url: str, once: str | None = None, options: ChatOptions = ChatOptions(), stream: bool = True) -> int:
    client = ChatClient(url)
    if once is not None:
        try:
            ask(client, once, options, stream)
        except ChatError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    print("chatstack — type a message, Ctrl-D to quit" + (f" (session {options.session_id})" if options.session_id else ""))
    while True:
        try:
            text = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not text.strip():
            continue
        print("bot> ", end="", flush=True)
        try:
            ask(client, text, options, stream)
        except ChatError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
