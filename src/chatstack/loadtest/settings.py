"""The load test's own options, validated once from Locust's parsed command line.

Bounded by construction: every target is loopback (`targets.py`), a run time is
required, and each request has a timeout, so a run always stops by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatstack import project
from chatstack.loadtest.targets import loopback_host

DEFAULT_PROMPTS = project.ROOT / "loadtest" / "prompts.yaml"
DEFAULT_GRPC_URL = "127.0.0.1:8001"
DEFAULT_HTTP_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class LoadSettings:
    grpc_url: str = DEFAULT_GRPC_URL
    http_url: str = DEFAULT_HTTP_URL
    prompts: Path = DEFAULT_PROMPTS
    users: int = 1
    user_qps: float | None = None  # constant_throughput per user; None: think time
    think_min_s: float = 0.5
    think_max_s: float = 2.0
    request_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        loopback_host(self.grpc_url, "--grpc-url")
        loopback_host(self.http_url, "--host")
        if self.users < 1:
            raise ValueError(f"--users must be >= 1, got {self.users}")
        if self.user_qps is not None and self.user_qps <= 0:
            raise ValueError(f"--user-qps / --target-qps must be > 0, got {self.user_qps}")
        if not 0 <= self.think_min_s <= self.think_max_s:
            raise ValueError(f"--think-min-s/--think-max-s must satisfy 0 <= min <= max, "
                             f"got {self.think_min_s}, {self.think_max_s}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"--request-timeout-s must be > 0, got {self.request_timeout_s}")

    @classmethod
    def from_options(cls, options) -> "LoadSettings":
        """From Locust's `environment.parsed_options`; the run must be bounded by --run-time."""
        if options is None:
            raise ValueError("the chatstack load test needs Locust's parsed options (run it with the locust CLI)")
        if not getattr(options, "worker", False) and not options.run_time:
            raise ValueError("--run-time is required: the chatstack load test must stop by itself")
        if options.target_qps and options.user_qps:
            raise ValueError("give --target-qps (total) or --user-qps (per user), not both")
        users = options.num_users or 1
        user_qps = options.user_qps or (options.target_qps / users if options.target_qps else None)
        return cls(
            grpc_url=options.grpc_url, http_url=options.host or DEFAULT_HTTP_URL, prompts=Path(options.prompts),
            users=users, user_qps=user_qps, think_min_s=options.think_min_s, think_max_s=options.think_max_s,
            request_timeout_s=options.request_timeout_s,
        )


def add_arguments(parser) -> None:
    """Locust command-line options of the chatstack users (also settable as CHATSTACK_* variables)."""
    group = parser.add_argument_group("chatstack")
    group.add_argument("--grpc-url", default=DEFAULT_GRPC_URL, env_var="CHATSTACK_GRPC_URL",
                       help="Triton gRPC address (loopback only)")
    group.add_argument("--prompts", default=str(DEFAULT_PROMPTS), env_var="CHATSTACK_PROMPTS",
                       help="prompt mix YAML")
    group.add_argument("--target-qps", type=float, default=0.0, env_var="CHATSTACK_TARGET_QPS",
                       help="total requests/s: each of the -u users paces itself at target/users")
    group.add_argument("--user-qps", type=float, default=0.0, env_var="CHATSTACK_USER_QPS",
                       help="requests/s per user (constant_throughput); needed by the step shape")
    group.add_argument("--think-min-s", type=float, default=0.5, help="think time when no rate is given")
    group.add_argument("--think-max-s", type=float, default=2.0)
    group.add_argument("--request-timeout-s", type=float, default=30.0, help="a request without its final "
                       "response by then counts as a timeout failure")
    group.add_argument("--step-qps", default="", env_var="CHATSTACK_STEP_QPS",
                       help="step shape only: comma-separated total rates, e.g. 1,2,4")
    group.add_argument("--step-s", type=float, default=20.0, help="step shape only: seconds per step")
