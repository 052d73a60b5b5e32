"""Delivery providers: one module per provider, all behind the interfaces in ``base``."""
