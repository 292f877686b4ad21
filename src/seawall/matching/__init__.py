"""Matching content, signals, URLs and text against enabled lists; policies, webhooks, the match log."""
