"""Locust users for the chat ensemble: gRPC streaming (tritonclient) and HTTP server-sent events.

Importing this module makes grpc cooperate with gevent (`init_gevent`, before any channel
exists): without it, grpc's channel-spin thread, which Locust's monkey-patching turns
into a greenlet, blocks the only OS thread in a C poll and the whole run hangs
(docs/decisions/0006-locust-grpc.md).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import gevent
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import User, events, task  # noqa: E402  (after init_gevent, before any channel)
from locust.user.wait_time import between, constant_throughput  # noqa: E402

from chatstack.loadtest import settings as load_settings  # noqa: E402
from chatstack.loadtest.grpc_stream import ChatStream  # noqa: E402
from chatstack.loadtest.measurement import ChatMeasurement, report  # noqa: E402
from chatstack.loadtest.prompts import ChatTurn, PromptCursor, PromptMix  # noqa: E402
from chatstack.loadtest.settings import LoadSettings  # noqa: E402
from chatstack.loadtest.sse_stream import SseChat  # noqa: E402


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_kwargs) -> None:
    load_settings.add_arguments(parser)


@events.init.add_listener
def _refuse_unbounded_or_remote_runs(environment, **_kwargs) -> None:
    """Fail fast, before any user starts, on a non-loopback target or a missing --run-time."""
    try:
        settings = LoadSettings.from_options(environment.parsed_options)
        PromptMix.load(settings.prompts)
    except ValueError as exc:
        raise SystemExit(f"chatstack load test refused: {exc}") from None
    # libev caches "now"; importing the locustfile (grpc, tritonclient, numpy) leaves it
    # seconds behind, and Locust's --run-time timer would then fire that much early
    gevent.get_hub().loop.update_now()


# grpc's gevent mode parks each open channel's completion-queue poll on a thread of the hub's
# pool; with more channels (one per gRPC user) than pool threads, the rest wait for a poll to time
# out and every reply is late by about a second (docs/decisions/0006-locust-grpc.md, "Pool size")
SPARE_POOL_THREADS = 4


@events.init.add_listener
def _one_pool_thread_per_channel(environment, **_kwargs) -> None:
    pool = gevent.get_hub().threadpool
    users = getattr(environment.parsed_options, "num_users", None) or 0
    pool.maxsize = max(pool.maxsize, users + SPARE_POOL_THREADS)
    print(f"gevent thread pool: {pool.maxsize} threads for {users} users", flush=True)


@functools.lru_cache(maxsize=4)
def _mix(path: Path) -> PromptMix:
    return PromptMix.load(path)


class ChatUser(User):
    """Draws turns from the prompt mix, paced by --user-qps/--target-qps or a think time.

    Subclasses say how to connect (`connect`, an object with `close()`) and how to send one turn (`ask`).
    """

    abstract = True
    request_type = ""

    def on_start(self) -> None:
        self.settings = LoadSettings.from_options(self.environment.parsed_options)
        self.mix = _mix(self.settings.prompts)
        self.cursor = PromptCursor(self.mix, random.Random())
        if self.settings.user_qps is not None:
            self._pace = constant_throughput(self.settings.user_qps)
        else:
            self._pace = between(self.settings.think_min_s, self.settings.think_max_s)
        self.connection = self.connect()

    def on_stop(self) -> None:
        self.connection.close()

    def wait_time(self) -> float:
        return self._pace(self)

    @task
    def chat(self) -> None:
        turn = self.cursor.next_turn()
        report(self.environment.events, self.request_type, self.ask(turn), turn.kind)

    def connect(self):
        raise NotImplementedError

    def ask(self, turn: ChatTurn) -> ChatMeasurement:
        raise NotImplementedError


class GrpcChatUser(ChatUser):
    """One gRPC stream per user to the `chat` ensemble (tritonclient), reused across requests."""

    request_type = "grpc"

    def connect(self) -> ChatStream:
        return ChatStream(self.settings.grpc_url, timeout_s=self.settings.request_timeout_s)

    def ask(self, turn: ChatTurn) -> ChatMeasurement:
        return self.connection.ask(turn.text, self.mix.chat_options(turn.session_id))


class SseChatUser(ChatUser):
    """HTTP server-sent events against Triton's generate_stream endpoint (--host)."""

    request_type = "sse"

    def connect(self) -> SseChat:
        return SseChat(self.settings.http_url, timeout_s=self.settings.request_timeout_s)

    def ask(self, turn: ChatTurn) -> ChatMeasurement:
        return self.connection.ask(turn.text, self.mix.chat_options(turn.session_id).request_fields())
