"""Step-up load shape for chatstack; use together with the locustfile:

    locust -f loadtest/locustfile.py,loadtest/step_shape.py GrpcChatUser --headless \
        --run-time 120s --user-qps 0.5 --step-qps 1,2,4 --step-s 30 --csv build/loadtest/steps
"""

from chatstack.loadtest.shape import StepRateShape

__all__ = ["StepRateShape"]
