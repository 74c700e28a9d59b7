"""The gateway: everything between the client and a model."""
