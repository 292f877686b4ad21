"""The FastAPI application: JSON API under /v1, the analyst console, public pages."""
