/*
 * libupstream-revtun — the acceptor's transport seam (since 0.2).
 *
 * By default the handshake acceptor reads and answers an initiator's
 * HTTP/1.1 handshake on the raw socket. A transport lets it run the handshake
 * inside a session layer — TLS in practice — the way Envoy's initiators dial
 * the upstream with a TLS transport socket:
 *
 *   1. the initiator connects and opens the session (a TLS ClientHello);
 *   2. the acceptor drives the session's handshake through the transport in the
 *      host's loop: when the transport needs the socket readable or writable the
 *      library asks the host for that interest through the io callback, and the
 *      acceptor's handshake timeout bounds the whole exchange;
 *   3. the HTTP/1.1 handshake is read and answered through the session;
 *   4. once the answer is written the session is parked: abandoned without a
 *      closing alert (TLS "quiet shutdown"), so the socket is the raw byte
 *      stream again — the parked tunnel's RPING keepalive travels on the raw
 *      stream, outside the session, as Envoy's does;
 *   5. the transport's per-connection state is released and the fd joins the
 *      pool. A parked tunnel is plain TCP: it costs nothing extra while idle.
 *
 * After a handoff the roles flip: the host starts a NEW session on the fd as
 * the client (Envoy's upstream speaks TLS as the client there, the initiator
 * is the server). Late RPING echoes can still arrive on the raw stream below
 * that session; revtun_rping_strip() removes them (the OpenSSL part of this
 * library, <revtun/openssl.h>, does it in a BIO).
 *
 * The seam is a set of callbacks on an opaque revtun_transport_t, copied into
 * each acceptor by revtun_acceptor_set_transport(). Plaintext is the absence
 * of a transport and costs nothing. <revtun/openssl.h> is one implementation;
 * a host with another TLS stack implements the same callbacks.
 */
#ifndef REVTUN_TRANSPORT_H
#define REVTUN_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <revtun/revtun.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct revtun_transport revtun_transport_t;

/* What a session callback reports. */
enum revtun_tp_status {
  REVTUN_TP_DONE = 0,       /* finished: handshake complete, or bytes moved */
  REVTUN_TP_WANT_READ = 1,  /* call again once the socket is readable */
  REVTUN_TP_WANT_WRITE = 2, /* call again once the socket is writable */
  REVTUN_TP_CLOSED = 3,     /* the peer ended the session */
  REVTUN_TP_FAILED = 4      /* the session failed: the failure callback says how */
};

/* How a session failed. Each class has a counter <prefix>.transport.<name>. */
enum revtun_tp_failure {
  REVTUN_TP_FAIL_CONNECTION = 1,   /* connection_error: not the protocol, truncated,
                                      refused renegotiation, a fatal alert ... */
  REVTUN_TP_FAIL_NO_PEER_CERT = 2, /* fail_verify_no_cert: a required peer certificate
                                      is missing */
  REVTUN_TP_FAIL_VERIFY = 3        /* fail_verify_error: the peer certificate did not
                                      verify (unknown issuer, expired, not yet valid,
                                      revoked, ...) */
};

/* Fields of the peer's identity, as Envoy's %DOWNSTREAM_PEER_*% operators
 * render them. Lists are joined with ','. Validity times are decimal seconds
 * since 1970-01-01 UTC (the format engine renders them as times). */
enum revtun_peer_field {
  REVTUN_PEER_URI_SAN = 1,         /* %DOWNSTREAM_PEER_URI_SAN% */
  REVTUN_PEER_DNS_SAN = 2,         /* %DOWNSTREAM_PEER_DNS_SAN% */
  REVTUN_PEER_SUBJECT = 3,         /* %DOWNSTREAM_PEER_SUBJECT% (RFC 2253) */
  REVTUN_PEER_ISSUER = 4,          /* %DOWNSTREAM_PEER_ISSUER% (RFC 2253) */
  REVTUN_PEER_FINGERPRINT_256 = 5, /* %DOWNSTREAM_PEER_FINGERPRINT_256% (lowercase hex) */
  REVTUN_PEER_SERIAL = 6,          /* %DOWNSTREAM_PEER_SERIAL% (lowercase hex) */
  REVTUN_PEER_TLS_VERSION = 7,     /* %DOWNSTREAM_TLS_VERSION% (e.g. TLSv1.3) */
  REVTUN_PEER_CERT_V_START = 8,    /* %DOWNSTREAM_PEER_CERT_V_START% */
  REVTUN_PEER_CERT_V_END = 9       /* %DOWNSTREAM_PEER_CERT_V_END% */
};

/* Session callbacks. conn is the transport's own state for one connection;
 * none of them may call into the library.
 *
 * open:      start a server-side session on fd (non-blocking, owned by the
 *            library); set *conn; return REVTUN_OK or a negative status.
 * handshake: advance the session's handshake; a revtun_tp_status.
 * read:      up to cap decrypted bytes into buf, *n set when DONE.
 * write:     bytes from buf, *n set to how many were taken when DONE (the
 *            library calls again for the rest).
 * park:      abandon the session without a closing alert, leaving the fd the
 *            raw byte stream; called once, after the whole answer was written.
 * close:     release conn (never close the fd); called exactly once.
 * failure:   after FAILED: the revtun_tp_failure class, and a sentence in why.
 * peer:      one identity field of the peer; REVTUN_OK with *value, *len (the
 *            string stays valid until close), or REVTUN_E_NOT_FOUND. */
typedef int (*revtun_tp_open_fn)(void *tp_user, int fd, void **conn);
typedef int (*revtun_tp_handshake_fn)(void *conn);
typedef int (*revtun_tp_read_fn)(void *conn, uint8_t *buf, size_t cap, size_t *n);
typedef int (*revtun_tp_write_fn)(void *conn, const uint8_t *buf, size_t len, size_t *n);
typedef void (*revtun_tp_park_fn)(void *conn);
typedef void (*revtun_tp_close_fn)(void *conn);
typedef int (*revtun_tp_failure_fn)(void *conn, char *why, size_t why_len);
typedef int (*revtun_tp_peer_fn)(void *conn, int field, const char **value, size_t *len);

REVTUN_API REVTUN_WARN_UNUSED int revtun_transport_new(revtun_transport_t **out, void *tp_user);
REVTUN_API void revtun_transport_free(revtun_transport_t *t);
REVTUN_API int revtun_transport_set_session(revtun_transport_t *t, revtun_tp_open_fn open,
                                            revtun_tp_close_fn close);
REVTUN_API int revtun_transport_set_io(revtun_transport_t *t, revtun_tp_handshake_fn handshake,
                                       revtun_tp_read_fn read, revtun_tp_write_fn write,
                                       revtun_tp_park_fn park);
REVTUN_API int revtun_transport_set_diagnostics(revtun_transport_t *t, revtun_tp_failure_fn failure,
                                                revtun_tp_peer_fn peer);

/* Connections the acceptor takes from now on run through a copy of t (NULL:
 * plaintext again); connections already taken keep the callbacks they were
 * opened with. The tp_user it carries must outlive the acceptor. */
REVTUN_API int revtun_acceptor_set_transport(revtun_acceptor_t *acc, const revtun_transport_t *t);

/* The peer identity a tunnel_setup or handshake_failed record carries when
 * the handshake ran through a transport; NULL otherwise (and for every other
 * record). */
REVTUN_API const char *revtun_event_peer(const revtun_event_t *ev, int field, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* REVTUN_TRANSPORT_H */
