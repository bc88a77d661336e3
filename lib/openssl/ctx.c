/* SSL_CTX builders for both TLS phases of a tunnel, from PEM files. */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include "openssl_int.h"

/* The first queued OpenSSL error as a sentence after what, then clears the
 * queue so nothing leaks into the host's next OpenSSL call. */
int rto_fail(int status, char *err, size_t errlen, const char *what, const char *file) {
  unsigned long e = ERR_peek_error();
  char reason[256];
  if (e)
    ERR_error_string_n(e, reason, sizeof(reason));
  else
    snprintf(reason, sizeof(reason), "no detail");
  ERR_clear_error();
  if (err && errlen)
    snprintf(err, errlen, "%s%s%s: %s", what, file ? " " : "", file ? file : "", reason);
  return status;
}

/* http/1.1 when the client offers it; no ALPN otherwise (Envoy's initiators
 * offer none on the handshake connection). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl, (void)arg;
  static const unsigned char h1[] = "\x08http/1.1";
  unsigned char *sel;
  if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static int load_crl(SSL_CTX *ctx, const char *crl_file, char *err, size_t errlen) {
  FILE *f = fopen(crl_file, "r");
  if (!f) {
    if (err && errlen)
      snprintf(err, errlen, "cannot open CRL file %s", crl_file);
    return REVTUN_E_CONFIG;
  }
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  int n = 0;
  X509_CRL *crl;
  while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL))) {
    int ok = X509_STORE_add_crl(store, crl);
    X509_CRL_free(crl);
    if (!ok) {
      fclose(f);
      return rto_fail(REVTUN_E_CONFIG, err, errlen, "cannot add the CRL from", crl_file);
    }
    n++;
  }
  fclose(f);
  ERR_clear_error(); /* the end of the file reads as an error */
  if (!n) {
    if (err && errlen)
      snprintf(err, errlen, "no CRL in %s", crl_file);
    return REVTUN_E_CONFIG;
  }
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  return REVTUN_OK;
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(method);
  if (!ctx) {
    rto_fail(REVTUN_E_NOMEM, err, errlen, "SSL_CTX_new failed", NULL);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* Tunnels never resume sessions, and renegotiating inside a handshake
   * exchange is only ever an attack. */
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  return ctx;
}

static int load_identity(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err,
                         size_t errlen) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
    return rto_fail(REVTUN_E_CONFIG, err, errlen, "cannot load the certificate chain", cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
    return rto_fail(REVTUN_E_CONFIG, err, errlen, "cannot load the private key", key_file);
  if (SSL_CTX_check_private_key(ctx) != 1)
    return rto_fail(REVTUN_E_CONFIG, err, errlen, "the private key does not match", cert_file);
  return REVTUN_OK;
}

int revtun_openssl_server_ctx(SSL_CTX **out, const char *cert_file, const char *key_file,
                              const char *ca_file, const char *crl_file, char *err, size_t errlen) {
  if (!out || !cert_file || !key_file || (crl_file && !ca_file)) {
    if (err && errlen)
      snprintf(err, errlen, "need out, a certificate and a key (and a CA with a CRL)");
    return REVTUN_E_INVAL;
  }
  *out = NULL;
  SSL_CTX *ctx = new_ctx(TLS_server_method(), err, errlen);
  if (!ctx)
    return REVTUN_E_NOMEM;
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
  int rc = load_identity(ctx, cert_file, key_file, err, errlen);
  if (!rc && ca_file) {
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
      rc = rto_fail(REVTUN_E_CONFIG, err, errlen, "cannot load the CA bundle", ca_file);
    else
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  if (!rc && crl_file)
    rc = load_crl(ctx, crl_file, err, errlen);
  if (rc) {
    SSL_CTX_free(ctx);
    return rc;
  }
  *out = ctx;
  return REVTUN_OK;
}

int revtun_openssl_client_ctx(SSL_CTX **out, const char *ca_file, const char *cert_file,
                              const char *key_file, char *err, size_t errlen) {
  if (!out || !ca_file || (!cert_file != !key_file)) {
    if (err && errlen)
      snprintf(err, errlen, "need out and a CA bundle (and both or neither of cert and key)");
    return REVTUN_E_INVAL;
  }
  *out = NULL;
  SSL_CTX *ctx = new_ctx(TLS_client_method(), err, errlen);
  if (!ctx)
    return REVTUN_E_NOMEM;
  static const unsigned char h2[] = "\x02h2";
  int rc = REVTUN_OK;
  if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
    rc = rto_fail(REVTUN_E_CONFIG, err, errlen, "cannot load the CA bundle", ca_file);
  else if (SSL_CTX_set_alpn_protos(ctx, h2, sizeof(h2) - 1) != 0)
    rc = rto_fail(REVTUN_E_NOMEM, err, errlen, "cannot set ALPN", NULL);
  else if (cert_file)
    rc = load_identity(ctx, cert_file, key_file, err, errlen);
  if (rc) {
    SSL_CTX_free(ctx);
    return rc;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  *out = ctx;
  return REVTUN_OK;
}
