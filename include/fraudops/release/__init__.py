"""Release lifecycle: shadow evaluation, gating, promotion and rollback of challenger models."""
