"""Model backends: the local engine and remote providers, one Protocol (`base.Provider`)."""
