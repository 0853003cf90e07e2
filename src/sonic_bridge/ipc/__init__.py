"""Host <-> worker IPC: the lock-free shared-memory rings, the binary codec, the messages and the handshake.
Knows nothing of Nova Sonic or of any engine."""
