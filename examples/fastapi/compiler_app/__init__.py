"""Example: a FastAPI service that compiles uploaded sources in errands jobs."""
