"""``python -m sonic_bridge.worker``: how a host launches a worker."""

from sonic_bridge.worker.main import main

main()
