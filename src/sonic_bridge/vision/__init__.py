"""Vision: camera frames from the host, a sampled window in the worker, and the built-in look tool.

Host side (no extra dependency): ``slot`` (the shared-memory latest-frame slot) and ``sampler`` (which
frames are kept). Worker side: ``camera`` (sampling the slot into a ``window`` of JPEGs made by
``encoder``), ``look`` (the tool Nova Sonic calls) and ``converse`` (the multimodal Nova behind it).
``settings`` holds ``VisionSettings``, validated on the host like every other setting.
"""
