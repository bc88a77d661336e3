/*
 * revtun-upstream-proxy: TLS on the tunnel listener (--tunnel-tls-*). The
 * acceptor runs each handshake inside a TLS session (libupstream-revtun-
 * openssl), agents presenting a certificate that chains to --tunnel-tls-ca
 * when one is given; once the answer is out the session is dropped with a
 * quiet shutdown and the tunnel parks as raw TCP. SIGHUP loads the files
 * again for the handshakes that start from then on.
 *
 * After a handoff (--handoff-tls-*) the roles flip: the proxy opens a new
 * TLS session on the raw tunnel as the client (ALPN h2), late RPING echoes
 * stripped below it, and the agent's server certificate must chain to
 * --handoff-tls-ca and name the node the tunnel was taken for.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>

#include "proxy.h"

#ifdef EXAMPLES_TLS
#include <revtun/openssl.h>

/* Does the serialized acceptor config mention a peer-certificate operator
 * (a validation format binding the claimed ids to the certificate)? The
 * bytes are searched as they are: the format strings are stored verbatim. */
static int binds_identity(const uint8_t *conf, size_t len) {
  static const char op[] = "%DOWNSTREAM_PEER_";
  const size_t n = sizeof(op) - 1;

  for (size_t i = 0; conf && i + n <= len; i++)
    if (conf[i] == '%' && !memcmp(conf + i, op, n))
      return 1;
  return 0;
}

static SSL_CTX *load_ctx(const struct settings *c, char *err, size_t errlen) {
  SSL_CTX *ctx = NULL;

  if (revtun_openssl_server_ctx(&ctx, c->tls_cert, c->tls_key, c->tls_ca, c->tls_crl, err,
                                errlen) != REVTUN_OK)
    return NULL;
  return ctx;
}

static SSL_CTX *load_handoff_ctx(const struct settings *c, char *err, size_t errlen) {
  SSL_CTX *ctx = NULL;

  if (revtun_openssl_client_ctx(&ctx, c->handoff_ca, c->handoff_cert, c->handoff_key, err,
                                errlen) != REVTUN_OK)
    return NULL;
  return ctx;
}

/* --handoff-tls-*: the client context of sessions after handoffs. */
static int handoff_setup(struct proxy *p) {
  const struct settings *c = &p->cfg;
  char err[512];

  if (!c->handoff_ca) {
    if (c->handoff_cert || c->handoff_key) {
      fprintf(stderr, PROG ": --handoff-tls-cert and --handoff-tls-key need --handoff-tls-ca\n");
      return -1;
    }
    return 0;
  }
  if (!c->handoff_cert != !c->handoff_key) {
    fprintf(stderr, PROG ": --handoff-tls-cert and --handoff-tls-key go together\n");
    return -1;
  }
  if (!(p->handoff_ctx = load_handoff_ctx(c, err, sizeof(err)))) {
    fprintf(stderr, PROG ": handoff TLS: %s\n", err);
    return -1;
  }
  if (c->handoff_verify_none)
    logmsg("warning: --handoff-tls-verify none: any certificate of the handoff CA may serve "
           "any node's traffic");
  logmsg("sessions after the handoff speak TLS (agent certificate %s)",
         c->handoff_verify_none ? "chained to the CA" : "naming the node");
  return 0;
}

SSL *proxy_handoff_ssl(struct proxy *p, int fd, revtun_strip_t strip, const char *node_id) {
  char err[256];
  SSL *ssl = NULL;

  if (revtun_openssl_handoff_new(&ssl, p->handoff_ctx, fd, strip, node_id,
                                 p->cfg.handoff_verify_none ? REVTUN_OPENSSL_NODE_ANY : -1, NULL,
                                 err, sizeof(err)) != REVTUN_OK) {
    logmsg("tunnel fd %d: cannot start TLS after the handoff: %s", fd, err);
    return NULL;
  }
  SSL_set_read_ahead(ssl, 1); /* whole reads, not a record per recv */
  return ssl;
}

int proxy_tls_setup(struct proxy *p, const uint8_t *aconf, size_t aconf_len) {
  const struct settings *c = &p->cfg;
  char err[512];
  SSL_CTX *ctx;
  int rc;

  if (handoff_setup(p) < 0)
    return -1;
  if (!c->tls_cert && !c->tls_key && !c->tls_ca && !c->tls_crl)
    return 0;
  if (!c->tls_cert || !c->tls_key || (c->tls_crl && !c->tls_ca)) {
    fprintf(stderr, PROG ": --tunnel-tls-cert and --tunnel-tls-key go together; "
                         "--tunnel-tls-crl needs --tunnel-tls-ca\n");
    return -1;
  }
  if (!(ctx = load_ctx(c, err, sizeof(err)))) {
    fprintf(stderr, PROG ": tunnel TLS: %s\n", err);
    return -1;
  }
  rc = revtun_openssl_new(&p->tls, ctx);
  SSL_CTX_free(ctx); /* the transport holds its own reference */
  if (rc != REVTUN_OK ||
      revtun_acceptor_set_transport(p->acc, revtun_openssl_transport(p->tls)) != REVTUN_OK) {
    fprintf(stderr, PROG ": tunnel TLS: %s\n", revtun_strerror(rc));
    return -1;
  }
  if (c->tls_ca && !binds_identity(aconf, aconf_len))
    logmsg("warning: --tunnel-tls-ca without identity binding: the acceptor config has no "
           "%%DOWNSTREAM_PEER_...%% validation format, so any certificate of that CA may "
           "register as any node, cluster and tenant");
  logmsg("tunnel listener speaks TLS (%s)",
         c->tls_ca ? "client certificates required" : "no client certificates");
  return 0;
}

void proxy_tls_reload(struct proxy *p) {
  char err[512];
  SSL_CTX *ctx;

  if (p->handoff_ctx) { /* sessions in progress hold their own reference */
    if (!(ctx = load_handoff_ctx(&p->cfg, err, sizeof(err)))) {
      logmsg("SIGHUP: handoff TLS reload failed, keeping the previous files: %s", err);
    } else {
      SSL_CTX_free(p->handoff_ctx);
      p->handoff_ctx = ctx;
      logmsg("SIGHUP: handoff CA, certificate and key reloaded");
    }
  }
  if (!p->tls) {
    if (!p->handoff_ctx)
      logmsg("SIGHUP: no TLS configured, nothing to reload");
    return;
  }
  if (!(ctx = load_ctx(&p->cfg, err, sizeof(err)))) {
    logmsg("SIGHUP: reload failed, keeping the previous certificates: %s", err);
    return;
  }
  revtun_openssl_set_ctx(p->tls, ctx);
  SSL_CTX_free(ctx);
  logmsg("SIGHUP: certificates, key and CRL reloaded");
}

void proxy_tls_free(struct proxy *p) {
  revtun_openssl_free(p->tls);
  SSL_CTX_free(p->handoff_ctx);
  p->tls = NULL;
  p->handoff_ctx = NULL;
}

#else /* built without OpenSSL */

int proxy_tls_setup(struct proxy *p, const uint8_t *aconf, size_t aconf_len) {
  const struct settings *c = &p->cfg;

  (void)aconf, (void)aconf_len;
  if (!c->tls_cert && !c->tls_key && !c->tls_ca && !c->tls_crl && !c->handoff_ca &&
      !c->handoff_cert && !c->handoff_key)
    return 0;
  fprintf(stderr, PROG ": --tunnel-tls-*, --handoff-tls-*: built without OpenSSL\n");
  return -1;
}

struct ssl_st *proxy_handoff_ssl(struct proxy *p, int fd, revtun_strip_t strip,
                                 const char *node_id) {
  (void)p, (void)fd, (void)strip, (void)node_id;
  return NULL;
}

void proxy_tls_reload(struct proxy *p) {
  (void)p;
  logmsg("SIGHUP: no TLS configured, nothing to reload");
}

void proxy_tls_free(struct proxy *p) { (void)p; }

#endif
