"""FastAPI app: one router per operation plus the operations API; auth; the Temporal client."""
