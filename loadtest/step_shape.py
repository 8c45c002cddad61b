"""Step-up load shape for chatstack; use together with the locustfile:

    locust -f loadtest/locustfile.py,loadtest/step_shape.py GrpcChatUser --headless \
        --run-time 120s --user-qps 0.5 --step-qps 1,2,4 --step-s 30 --csv build/loadtest/steps
"""

from locust import LoadTestShape

from chatstack.loadtest.shape import RateSteps


class StepRateShape(LoadTestShape):
    """Users for the current step's rate (from --step-qps/--step-s/--user-qps); None ends the run.

    Locust does not apply --run-time to a shape, so the shape enforces it itself.
    """

    def tick(self):
        options = self.runner.environment.parsed_options
        elapsed = self.get_run_time()
        if elapsed >= options.run_time:
            return None
        users = RateSteps.parse(options.step_qps, options.step_s, options.user_qps).users_at(elapsed)
        return None if users is None else (users, users)
