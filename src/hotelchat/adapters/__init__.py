"""Everything that talks to the outside world; the only place vendor SDKs are imported."""
