"""Links an answer carries to the operator's console (the Temporal Web UI)."""

from __future__ import annotations

from runtime.settings import Settings


def web_ui_url(settings: Settings, workflow_id: str) -> str:
    """The workflow's page in the Temporal Web UI of this deployment's namespace."""
    return (
        f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}"
        f"/workflows/{workflow_id}"
    )
