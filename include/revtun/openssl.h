/*
 * libupstream-revtun-openssl — TLS for reverse tunnels with OpenSSL (since 0.2).
 *
 * An optional companion library (pkg-config upstream-revtun-openssl, built when
 * libssl is present) that implements the acceptor's transport seam
 * (<revtun/transport.h>) with OpenSSL and gives a host what it needs on both
 * TLS phases of a tunnel:
 *
 *   handshake phase   the initiator is the TLS client (optionally presenting a
 *                     client certificate), the acceptor the server; the
 *                     HTTP/1.1 handshake runs inside that session, which both
 *                     sides then abandon with a quiet shutdown: the parked
 *                     tunnel is raw TCP, its RPING keepalive outside TLS.
 *   after the handoff the host opens a NEW session on the handed-off fd as the
 *                     TLS client (ALPN h2) with the agent as the server; late
 *                     RPING echoes on the raw stream are stripped below TLS, and
 *                     the agent's certificate must name the node that was
 *                     handed off.
 *
 * A host may build its own SSL_CTX (any OpenSSL 3 settings) or use the helpers
 * below, which read PEM files. The library never installs global OpenSSL
 * state (no allocator hooks, no locking callbacks).
 */
#ifndef REVTUN_OPENSSL_H
#define REVTUN_OPENSSL_H

#include <stddef.h>

#include <openssl/ssl.h>

#include <revtun/revtun.h>
#include <revtun/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct revtun_openssl revtun_openssl_t;

/* --------------------------------------------------- handshake phase (server) */

/* A server SSL_CTX from PEM files: certificate chain and key (required), a CA
 * bundle whose certificates clients must chain to (optional: without it no
 * client certificate is asked for), a CRL file checked against that chain
 * (optional, needs ca_file). TLS 1.2 minimum, no renegotiation, no session
 * tickets, ALPN "http/1.1" when offered. */
REVTUN_API REVTUN_WARN_UNUSED int revtun_openssl_server_ctx(SSL_CTX **out, const char *cert_file,
                                                            const char *key_file,
                                                            const char *ca_file,
                                                            const char *crl_file, char *errbuf,
                                                            size_t errbuf_len);

/* The transport for acceptors, over a server SSL_CTX (up-referenced: the host
 * may free its own reference). */
REVTUN_API REVTUN_WARN_UNUSED int revtun_openssl_new(revtun_openssl_t **out, SSL_CTX *ctx);
/* Connections accepted from now on use ctx (certificate, key and CRL reload);
 * sessions in progress keep theirs. */
REVTUN_API int revtun_openssl_set_ctx(revtun_openssl_t *o, SSL_CTX *ctx);
/* The seam to pass to revtun_acceptor_set_transport(); owned by o. */
REVTUN_API const revtun_transport_t *revtun_openssl_transport(const revtun_openssl_t *o);
/* Free after every acceptor using it has been freed. */
REVTUN_API void revtun_openssl_free(revtun_openssl_t *o);

/* ---------------------------------------------- after the handoff (client) */

/* A client SSL_CTX for sessions on handed-off tunnels: the agent's server
 * certificate must chain to ca_file; cert_file/key_file (both or neither)
 * present a client certificate; ALPN "h2". */
REVTUN_API REVTUN_WARN_UNUSED int revtun_openssl_client_ctx(SSL_CTX **out, const char *ca_file,
                                                            const char *cert_file,
                                                            const char *key_file, char *errbuf,
                                                            size_t errbuf_len);

/* Flags for revtun_openssl_handoff_new(). */
enum revtun_openssl_verify {
  REVTUN_OPENSSL_NODE_DNS_SAN = 1, /* a DNS SAN equal to the node id names it */
  REVTUN_OPENSSL_NODE_URI_SAN = 2, /* a URI SAN equal to the node id names it */
  REVTUN_OPENSSL_NODE_ANY = 0      /* only the chain is verified (not recommended) */
};

/* A client SSL object on a handed-off fd, ready for SSL_connect(): its BIO
 * reads the raw socket and strips late RPING echoes (starting from strip, the
 * state revtun_handoff() returned) before OpenSSL sees a byte, and writes
 * with send(MSG_NOSIGNAL); the peer certificate must name node_id as verify
 * says (REVTUN_OPENSSL_NODE_DNS_SAN | REVTUN_OPENSSL_NODE_URI_SAN by default
 * when verify is -1). The fd stays the caller's: SSL_free() does not close it.
 * sni, when not NULL, is sent as the server name. */
REVTUN_API REVTUN_WARN_UNUSED int revtun_openssl_handoff_new(SSL **out, SSL_CTX *ctx, int fd,
                                                             revtun_strip_t strip,
                                                             const char *node_id, int verify,
                                                             const char *sni, char *errbuf,
                                                             size_t errbuf_len);

#ifdef __cplusplus
}
#endif

#endif /* REVTUN_OPENSSL_H */
