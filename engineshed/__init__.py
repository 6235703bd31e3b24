"""engineshed's Python client (:mod:`engineshed.client`) and its command line (:mod:`engineshed.cli`).

The server lives in the ``gateway``, ``storage`` and ``engines`` packages; this package only speaks the public
API over HTTP and WebSocket, as any other client would.
"""
