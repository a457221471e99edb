"""The kubelet plugin: the namespace driver, on the kubelet protocol layer.

:mod:`space_dra.kubeletplugin` speaks the protocol; this package says what preparing a
claim means here. ``plan`` reads the claim and decides (nothing written), ``state``
makes the changes (tokens, credential files, CDI specs, checkpoint entries, refresh),
``artifacts``, ``cdi`` and ``checkpoint`` are the content of those files, ``health``
judges whether each prepared namespace is still usable from what ``monitor`` (claim
re-reads) and the refresh (token requests) report, ``driver`` ties plan and state to the
layer's callbacks, ``server`` and ``main`` run the process.
"""
