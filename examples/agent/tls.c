/*
 * revtun-downstream-agent: TLS on the handshake phase (--tls). The slot
 * dials, runs a TLS handshake as the client (verifying the upstream against
 * --ca and --sni, else the host of the --upstream it dialed; an IP is
 * checked against the certificate's IP SANs and sends no SNI), presents
 * --cert, sends the tunnel handshake and reads the answer inside TLS, then
 * abandons the session with a quiet shutdown: the parked tunnel is raw TCP,
 * its RPINGs outside TLS, as with Envoy's initiator.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"

#ifdef EXAMPLES_TLS
#include <openssl/x509v3.h>
#endif

int agent_tls_setup(struct agent *ag, const char *const *upstreams, char *err, size_t errlen) {
  const struct config *c = &ag->cfg;
  unsigned char ip[16];
  uint16_t port;

  if (!c->tls)
    return 0;
  if (!c->ca || !c->cert != !c->key) {
    snprintf(err, errlen, "--tls needs --ca, and --cert with --key (or neither)");
    return -1;
  }
  if (c->sni && strlen(c->sni) >= sizeof(ag->tls_name[0])) {
    snprintf(err, errlen, "--sni: name too long");
    return -1;
  }
  for (unsigned i = 0; i < c->n_upstreams; i++) {
    char *name = ag->tls_name[i];

    if (c->sni) {
      snprintf(name, sizeof(ag->tls_name[i]), "%s", c->sni);
    } else if (hostport_split(upstreams[i], name, sizeof(ag->tls_name[i]), &port) < 0) {
      snprintf(err, errlen, "--upstream %s: no host to verify (use --sni)", upstreams[i]);
      return -1;
    }
    ag->tls_name_is_ip[i] = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
  }
  if (!(ag->tls_ctx = tls_ctx_new(c->ca, c->cert, c->key, err, errlen)))
    return -1;
  return 0;
}

void agent_tls_free(struct agent *ag) {
  tls_ctx_free(ag->tls_ctx);
  ag->tls_ctx = NULL;
}

/* The slot's TCP connection is up: its TLS session, ready to handshake. */
int slot_tls_begin(struct slot *sl) {
#ifdef EXAMPLES_TLS
  struct agent *ag = sl->ag;
  SSL *ssl = tls_new(ag->tls_ctx, sl->sk.fd);
  const char *name = ag->tls_name[sl->up];
  X509_VERIFY_PARAM *vp;

  if (!ssl)
    return -1;
  vp = SSL_get0_param(ssl);
  if (ag->tls_name_is_ip[sl->up]
          ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
          : (SSL_set1_host(ssl, name) != 1 || SSL_set_tlsext_host_name(ssl, name) != 1)) {
    tls_quiet_free(ssl);
    return -1;
  }
  sl->ssl = ssl;
  return 0;
#else
  (void)sl;
  return -1;
#endif
}

/* The answer parked the tunnel: the handshake-phase session is dropped
 * without a close_notify and the slot reads the raw stream from here on. */
void slot_tls_park(struct slot *sl) {
  tls_quiet_free(sl->ssl);
  sl->ssl = NULL;
  sock_set_filter(&sl->sk, NULL, NULL);
}
