"""The call legs of the installed SIP engine, importable without pjsua2.

``check`` and ``explain`` run without the SIP engine, yet must say what the
engine will really do: they read the limit from here, as the engine does.
A pjsua2 built with a larger ``PJSUA_MAX_CALLS`` changes ``MAX_LEGS`` here
and nowhere else.
"""

from __future__ import annotations

MAX_LEGS = 4  # PJSUA_MAX_CALLS in the wheel; maxCalls above it is silently cut
# pjsua looks for a free call slot *before* it asks onSelectAccount: with every
# slot taken it answers 486 by itself and the gateway never hears of the
# INVITE. One slot is kept free so that every INVITE reaches the gate.
SPARE_LEGS = 1
CALL_LEGS = MAX_LEGS - SPARE_LEGS
