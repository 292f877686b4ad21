"""Users, roles, sessions, API keys, permissions and the hash-chained audit log."""
