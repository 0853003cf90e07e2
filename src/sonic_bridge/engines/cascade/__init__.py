"""The cascade engine: Amazon Transcribe streaming -> Bedrock ConverseStream (a Nova text/multimodal model)
-> Amazon Polly, behind the same host API as Nova Sonic. Modules: ``settings`` (host side), ``clients``
(the three SDK clients), ``transcribe``/``converse``/``polly`` (one stage each), ``sentences``, ``pipeline``.
"""
