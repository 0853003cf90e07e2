"""The Nova Sonic engine: the sans-IO session (``protocol``), its history, the model table, captions, the
session manager (renewal, reconnects) and the backends (the real service, the fakes' doors, a loopback).

Light on purpose: the host imports ``models`` and ``history`` and must not load the AWS SDK.
"""
