"""The network: how untrusted bytes are fetched (HTTPS today)."""
