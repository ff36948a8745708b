"""Loading a model from any of its four forms, and its fingerprint."""
