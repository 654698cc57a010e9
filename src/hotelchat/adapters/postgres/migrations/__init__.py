"""Alembic migrations, written as SQL. Applied by `hotelchat migrate` as the schema's owner."""
