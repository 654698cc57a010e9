"""PostgreSQL through asyncpg: the pool, tenant transactions, queries and migrations."""
