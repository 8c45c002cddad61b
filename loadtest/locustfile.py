"""Locust entry point for chatstack: gRPC streaming and HTTP SSE users of the `chat` ensemble.

    locust -f loadtest/locustfile.py GrpcChatUser --headless -u 8 -r 8 --run-time 60s \
        --grpc-url 127.0.0.1:8001 --target-qps 4 --csv build/loadtest/run

Add `loadtest/step_shape.py` to -f (comma-separated) to step the rate up. See loadtest/README.md.
"""

from chatstack.loadtest.users import GrpcChatUser, SseChatUser

__all__ = ["GrpcChatUser", "SseChatUser"]
