"""The template's benchmark: a default bake against the bare stack it is built on (`make bench`)."""
