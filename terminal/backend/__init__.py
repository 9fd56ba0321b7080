"""The terminal's backend side: the embedded ledger, and later the HTTP client and outbox."""
