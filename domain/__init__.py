"""Shared types: money, workflow inputs and outputs, task-queue names, search attributes, errors.

Everything here is pure data and safe to import from workflow code.
"""
