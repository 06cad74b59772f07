"""Experiments that produce the evidence behind the README's claims (one module per claim)."""
