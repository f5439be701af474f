"""Square: the adapter (`adapter.py`), its wire format (`wire.py`) and its orders and
notifications (`orders.py`)."""

from channels_sync.adapters.square.adapter import SquareAdapter
from channels_sync.adapters.square.wire import webhook_sign

__all__ = ["SquareAdapter", "webhook_sign"]
