"""Protocol clients for external systems. They know nothing of Temporal and work on their own."""
