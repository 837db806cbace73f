"""What the callbacks share without importing their frameworks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def scheduler_lr(keywords: Mapping[str, Any]) -> float | None:
    """The learning rate a Hugging Face callback sees: the scheduler's last, else the first
    parameter group's."""
    scheduler = keywords.get("lr_scheduler")
    if scheduler is not None and hasattr(scheduler, "get_last_lr"):
        last = scheduler.get_last_lr()
        if last:
            return float(last[0])
    optimizer = keywords.get("optimizer")
    for group in getattr(optimizer, "param_groups", ()):
        lr = group.get("lr")
        return float(lr) if isinstance(lr, (int, float)) else None
    return None
