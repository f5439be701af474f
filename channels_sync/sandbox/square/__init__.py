"""The Square sandbox (`app.py`: inventory and tokens; `orders.py`: orders and
notifications)."""

from channels_sync.sandbox.square.app import SquareSandbox
from core.sandbox import register_sandbox

register_sandbox("square", SquareSandbox)

__all__ = ["SquareSandbox"]
