"""The bare stack, with nothing of the service's own: what each service endpoint is measured against."""
