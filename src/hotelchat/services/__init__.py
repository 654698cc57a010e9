"""Use cases: receive an inbound message, reply to it, send it.

The only place events are emitted.
"""
