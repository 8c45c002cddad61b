"""Load testing the chat ensemble with Locust: users, prompt mix, step shape and `chatstack bench load`."""
