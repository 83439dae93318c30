"""The networks: custom layers (``layers``), the architectures (``networks``) and the one
builder of a compiled, trainable network (``trainable``)."""
