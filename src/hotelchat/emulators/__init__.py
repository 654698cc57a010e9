"""Loopback emulators of the external APIs (Twilio, OpenAI) for `hotelchat dev`, tests and load
tests. They speak the real wire format, so the official SDKs run unmodified against them."""
