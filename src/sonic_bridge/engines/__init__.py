"""Engines: what answers the user behind the bridge. ``sonic`` (Nova Sonic speech to speech, ``engines.sonic``)
or ``cascade`` (Transcribe -> Nova -> Polly, ``engines.cascade``). The worker picks one by
``BridgeConfig.engine``; both take the same host commands and give the same host events (``base.Engine``).

What both share lives here: ``base`` (the engine interface), ``failures`` (classified service errors) and
``aws`` (credentials, the CRT transport, the error mapping). Light on purpose: the host imports
``engines.cascade.settings`` and ``engines.sonic.models`` for its configuration, and nothing here may pull in
the AWS SDK.
"""
