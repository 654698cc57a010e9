"""HotelChat: guest messaging for hotel chains (WhatsApp and web chat, AI answers, live agents)."""

__version__ = "0.1.0"
