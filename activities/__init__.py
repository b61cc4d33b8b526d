"""Side effects. One class per external system, clients injected in ``__init__``; each method is
one idempotent, retryable step, registered with the worker as a bound method."""
