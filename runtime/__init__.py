"""Cross-cutting wiring: settings, the Temporal client factory, logging, metrics runtime.

Not in the design card's list: it holds what every process (API, worker, sandbox, tests) needs
to start, which belongs to none of the operation packages.
"""
