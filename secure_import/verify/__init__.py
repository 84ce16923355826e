"""Pure verification: bytes and pinned keys in, trusted objects or an error out.

Nothing in this package does I/O: no network, no files, no clock reads, no
platformdirs.  The import contracts in pyproject.toml enforce it."""
