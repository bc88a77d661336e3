/*
 * revtun-upstream-proxy: TLS on the tunnel listener (--tunnel-tls-*). The
 * acceptor runs each handshake inside a TLS session (libupstream-revtun-
 * openssl), agents presenting a certificate that chains to --tunnel-tls-ca
 * when one is given; once the answer is out the session is dropped with a
 * quiet shutdown and the tunnel parks as raw TCP. SIGHUP loads the files
 * again for the handshakes that start from then on.
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

int proxy_tls_setup(struct proxy *p, const uint8_t *aconf, size_t aconf_len) {
  const struct settings *c = &p->cfg;
  char err[512];
  SSL_CTX *ctx;
  int rc;

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

  if (!p->tls) {
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
  p->tls = NULL;
}

#else /* built without OpenSSL */

int proxy_tls_setup(struct proxy *p, const uint8_t *aconf, size_t aconf_len) {
  const struct settings *c = &p->cfg;

  (void)aconf, (void)aconf_len;
  if (!c->tls_cert && !c->tls_key && !c->tls_ca && !c->tls_crl)
    return 0;
  fprintf(stderr, PROG ": --tunnel-tls-*: built without OpenSSL\n");
  return -1;
}

void proxy_tls_reload(struct proxy *p) {
  (void)p;
  logmsg("SIGHUP: no TLS configured, nothing to reload");
}

void proxy_tls_free(struct proxy *p) { (void)p; }

#endif
