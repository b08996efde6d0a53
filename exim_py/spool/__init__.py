"""Exim's message queue: ids, the -H/-D file format, locking and queue listing."""

from exim_py.spool.spool import MessageLock, MessageLocked, MessageMissing, Spool

__all__ = ["MessageLock", "MessageLocked", "MessageMissing", "Spool"]
