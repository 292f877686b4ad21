"""The review console: queues, claims, blurred item views, reveals, keyboard grading, QA and the
analyst's exposure (issue #13)."""
