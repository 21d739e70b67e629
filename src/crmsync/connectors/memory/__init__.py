"""The in-memory connector: a process-wide system with failure injection (see :mod:`.connector`)."""

from crmsync.connectors.memory.connector import MemoryConnector
from crmsync.connectors.memory.settings import MemoryConnection, Refusal
from crmsync.connectors.memory.system import MemorySystem

__all__ = ["MemoryConnection", "MemoryConnector", "MemorySystem", "Refusal"]
