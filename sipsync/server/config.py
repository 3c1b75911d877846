"""Settings of one SIP service node (command-line driven; no Django here)."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    realm: str
    store_path: str
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 5060),)
    node_id: str = "local"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    nonce_ttl: float = 300.0
    # Credential failures tolerated per source address within the window before it is refused outright.
    auth_failure_limit: int = 20
    auth_failure_window: float = 60.0
    server_header: str = "ninja-sip"
    # The challenges a 401/407 offers, in order. MD5 only by default: many deployed UAs (SIPp 3.6,
    # Asterisk 18.5, FreeSWITCH 1.10.6, older desk phones) read only the first challenge, and
    # libre-based ones (Debian 12's baresip 1.0) refuse the whole response when any challenge
    # names an algorithm they lack, so a second SHA-256 challenge locks them out; a UA that
    # follows RFC 8760 takes the topmost challenge it supports, MD5, anyway. ("MD5", "SHA-256")
    # offers both; credentials computed with SHA-256 are verified either way.
    digest_algorithms: tuple[str, ...] = ("MD5",)
    allowed_methods: tuple[str, ...] = field(default=("REGISTER", "OPTIONS", "ACK"))
    # --- the proxy ---
    # Host (and port) this node puts in Record-Route and Via: the address phones and the trunk
    # reach it on (behind a NAT or a load balancer, not the listening address). None: the first
    # listening address (or the realm when that is a wildcard); port None: the bound port.
    public_host: str | None = None
    public_port: int | None = None
    # Upstream trunk for calls to public numbers, 'sip:HOST:PORT' (the host resolved to an IP
    # address at start-up); None: such calls get 502.
    trunk: str | None = None
    # RFC 3261 T1 (seconds) for the proxy's transactions; tests shorten it.
    timer_t1: float = 0.5
    # Timer C (RFC 3261 16.6 step 11, > 3 min): a branch without a final response this long after
    # its last provisional one is cancelled.
    ring_timeout: float = 181.0
    # Longest a paid call may last (seconds), however much credit there is: also caps the credit
    # one call reserves (see sipsync.server.calls).
    max_call_duration: int = 7200
    # How often (seconds) the node notes in its store that it is alive while calls are in
    # progress: after a crash, calls left over are closed out at the last such note.
    keepalive_interval: float = 1.0
    # --- event subscriptions (sipsync.server.notifier) ---
    # Shortest and longest subscription granted (seconds); shorter is refused with 423, longer cut.
    subscribe_min_expires: int = 60
    subscribe_max_expires: int = 3600
    # Subscriptions one account may hold at once (a 60-key BLF expansion module fits).
    max_subscriptions: int = 100
