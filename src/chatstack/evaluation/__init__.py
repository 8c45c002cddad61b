"""Model evaluation: held-out perplexity, DPO preference metrics, LLM-as-judge, A/B reports."""
