__version__ = "0.1.0"


def __getattr__(name):
    "`ldeq.Tracker` (ldeq.video.tracker.Tracker), imported on first use so that `import ldeq` stays light."
    if name == 'Tracker':
        from .video.tracker import Tracker
        return Tracker
    raise AttributeError(f"module 'ldeq' has no attribute {name!r}")
