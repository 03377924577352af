"""`index watch`: keep an index current with its roots (file-system events, or polling where
events do not arrive), one incremental build per settled batch of changes."""

from indexer.watch.loop import Watcher, WatchOptions, WatchRun

__all__ = ["WatchOptions", "WatchRun", "Watcher"]
