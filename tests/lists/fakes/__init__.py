"""Fake exchange sources (NCMEC, StopNCII, a Seawall feed, a file server) served on 127.0.0.1."""

from servers import free_port, serve

__all__ = ["free_port", "serve"]
