"""One router per public surface."""
