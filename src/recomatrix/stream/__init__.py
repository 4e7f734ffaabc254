"""The stream processor: events in, online features and the offline log out."""

from recomatrix.stream.processor import StreamProcessor, StreamSettings

__all__ = ["StreamProcessor", "StreamSettings"]
