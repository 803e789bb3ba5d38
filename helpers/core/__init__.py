"""The plumbing under every step: configuration (``config``), named file paths and the cache
(``files``), JSON Lines (``jsonl``), the HTTP client (``net``) and notebook boxes (``show``).
Imports nothing else of the kit."""
