"""The Quart application: webhooks, health checks, and (later) the dashboard and web chat."""
