"""Events between apps (factor IV: another app attached by URL): delivery, the incoming route, signing."""
