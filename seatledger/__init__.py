"""seatledger: event-sourced billing for seat-based SaaS contracts.

This package holds the plumbing every service shares (configuration, logging, metrics,
persistence and Kafka helpers, the command line). The services live in ``services``; the
event contracts other teams consume live in ``schemas``.
"""

__version__ = "0.1.0"
