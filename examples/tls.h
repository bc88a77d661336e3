/*
 * TLS for the example programs, with OpenSSL: a sock filter (sock.h) over an
 * SSL object and what both programs need around it.
 *
 * A tunnel has two TLS sessions, as Envoy layers them: during the handshake
 * the agent is the TLS client and the proxy's acceptor the server; both
 * abandon that session with a quiet shutdown (no close_notify) once the 200
 * is out, and the parked tunnel is raw TCP (RPING outside TLS). After the
 * handoff the proxy opens a new session as the TLS client (ALPN h2) and the
 * agent serves it.
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

/* A context from PEM files, TLS 1.2 minimum, no renegotiation, no session
 * tickets. server: cert and key required; ca (optional) makes a client
 * certificate chaining to it mandatory. Client: ca required (the server must
 * chain to it), cert and key optional (both or neither). alpn: a wire-format
 * protocol list (client: offered; server: the one accepted), or NULL. NULL on
 * failure, with the reason in err. */
SSL_CTX *tls_ctx_new(int server, const char *ca, const char *cert, const char *key,
                     const char *alpn, char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

/* A session on fd (which stays the caller's) reading one record at a time,
 * so bytes behind the last record stay in the kernel. NULL on failure. */
SSL *tls_new(SSL_CTX *ctx, int fd, int server);

/* One step of a non-blocking handshake: 1 done, 0 wants readability, 2 wants
 * writability, -1 failed (the reason in err). */
int tls_handshake(SSL *ssl, char *err, size_t errlen);

/* "TLSv1.3" and the like. */
const char *tls_version(const SSL *ssl);

/* Frees the session without a close_notify alert: the quiet shutdown that
 * leaves the raw stream to the parked tunnel (NULL: nothing). */
void tls_quiet_free(SSL *ssl);

#endif
