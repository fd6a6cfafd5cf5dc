"""Audit tools: tamper evidence over the event stores, time travel, invoice re-derivation and
export. Everything here reads the services' stores and never writes to their tables (the hash
chain's own tables excepted)."""
