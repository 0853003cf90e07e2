"""Engines: what answers the user behind the bridge. ``sonic`` (Nova Sonic speech to speech, the session
manager in ``sonic_bridge.runner``) or ``cascade`` (Transcribe -> Nova -> Polly). The worker picks one by
``BridgeConfig.engine``; both take the same host commands and give the same host events (``base.Engine``).

Light on purpose: the host imports ``engines.cascade.settings`` for its configuration and nothing here may
pull in the AWS SDK.
"""
