"""The bundled IM server: durable (PostgreSQL), horizontally scalable (NATS fan-out)."""

__version__ = "0.1.0"
