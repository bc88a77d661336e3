/*
 * TLS for the example programs, with OpenSSL: a sock filter (sock.h) over an
 * SSL object, and the client side of a session. The agent uses it for the
 * handshake phase of a tunnel, as Envoy layers it: the agent is the TLS
 * client, the proxy's acceptor (libupstream-revtun-openssl) the server, and
 * both abandon the session with a quiet shutdown (no close_notify) once the
 * answer is in: the parked tunnel is raw TCP (RPING outside TLS).
 *
 * Built without OpenSSL (EXAMPLES_TLS undefined), the constructors fail
 * with a message and the programs refuse their TLS flags.
 */
#ifndef REVTUN_EXAMPLES_TLS_H
#define REVTUN_EXAMPLES_TLS_H

#include <stddef.h>

#include "sock.h"

#ifdef EXAMPLES_TLS
#include <openssl/ssl.h>
#else
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
#endif

/* 1 when the programs were built with TLS. */
int tls_available(void);

/* The filter: sock_set_filter(s, &tls_filter, ssl). Plaintext in and out;
 * read returns -1 with errno EAGAIN when the session needs more bytes, EPROTO
 * on a TLS error; 0 at the peer's close_notify or EOF. */
extern const struct sock_filter tls_filter;

/* A client context from PEM files: the server must chain to ca; cert and
 * key (both or neither) are presented. TLS 1.2 minimum, no renegotiation, no
 * session tickets. NULL on failure, with the reason in err. */
SSL_CTX *tls_ctx_new(const char *ca, const char *cert, const char *key, char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

/* A client session on fd (which stays the caller's) reading one record at a
 * time, so bytes behind the last record stay in the kernel. NULL on failure. */
SSL *tls_new(SSL_CTX *ctx, int fd);

/* One step of a non-blocking handshake: 1 done, 0 wants readability, 2 wants
 * writability, -1 failed (the reason in err). */
int tls_handshake(SSL *ssl, char *err, size_t errlen);

/* "TLSv1.3" and the like. */
const char *tls_version(const SSL *ssl);

/* Frees the session without a close_notify alert: the quiet shutdown that
 * leaves the raw stream to the parked tunnel (NULL: nothing). */
void tls_quiet_free(SSL *ssl);

/* After the handoff the agent is the TLS server of a new session (ALPN h2
 * only), with its certificate; a client certificate the upstream presents
 * must chain to ca (NULL: none is asked for). */
SSL_CTX *tls_server_ctx_new(const char *ca, const char *cert, const char *key, char *err,
                            size_t errlen);

/* A server session on fd (which stays the caller's) that first reads the
 * bytes already taken off the socket: prefix (at most 16, a held partial
 * RPING that was data) then rest (at most 1 MiB). It reads ahead (see
 * tls_has_pending). NULL on failure. */
SSL *tls_server_new(SSL_CTX *ctx, int fd, const void *prefix, size_t plen, const void *rest,
                    size_t restlen);

/* 1 when the session holds bytes read from the socket and not yet
 * returned (read ahead): the reader must not wait for readability. */
int tls_has_pending(const SSL *ssl);

/* 1 when the session negotiated ALPN "h2". */
int tls_alpn_is_h2(const SSL *ssl);

/* Frees a session that is ending anyway (no alert is sent). */
void tls_free(SSL *ssl);

#endif
