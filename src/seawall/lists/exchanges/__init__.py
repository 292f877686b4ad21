"""Exchanges: pulling lists from elsewhere (files, other Seawall instances, NCMEC, StopNCII) on a
schedule, with checkpoints that make a killed sync resume, and sending opinions back. See
``docs/exchanges.md``."""
