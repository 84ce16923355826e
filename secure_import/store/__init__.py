"""Files on disk: the verified cache, state, sealed files, the audit log, key
and lock files, and the rules every directory we create follows."""
