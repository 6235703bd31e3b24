"""Webhooks: what an organization registers (registry) and how deliveries are sent (delivery)."""
