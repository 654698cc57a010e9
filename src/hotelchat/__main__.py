"""`python -m hotelchat` is the `hotelchat` command."""

from hotelchat.entrypoints.cli import main

main()
