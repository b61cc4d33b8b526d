"""Local stand-ins that speak the providers' real wire protocols, for ``make run`` and the tests.

The real clients in ``providers/`` talk to these exactly as they talk to the real services; only
base URLs and keys differ. None of them is the provider itself.
"""
