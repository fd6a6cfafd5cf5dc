"""The notifier: every issued invoice reaches its billing address, once, with its PDF (see
README.md in this folder)."""
