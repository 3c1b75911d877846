"""The SIP side of the product: the stack (``sip``), the service (``server``), and the portal's
sync app that pushes provisioning to it. ``native`` picks compiled or pure modules at import."""

from sipsync.native import activate as _activate_native

_activate_native()
