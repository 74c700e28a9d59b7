"""The local side: the vLLM engine deployment and the catalog of models it can serve."""
