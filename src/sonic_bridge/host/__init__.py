"""The host side: everything a host process runs (the SonicBridge facade, its configuration, launching and
supervising workers, pre-started workers, the worker environment, log routing). Imports no AWS package."""
