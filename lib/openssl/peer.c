/* The peer certificate's identity, rendered as Envoy's %DOWNSTREAM_PEER_*%
 * operators render it: SAN lists joined with ',', names in RFC 2253,
 * lowercase hex for the SHA-256 fingerprint and the serial number, the
 * negotiated protocol's name, validity times as seconds since the epoch.
 *
 * Certificates come from whoever connects: every value is bounded, and a
 * name holding a NUL or a control byte is left out rather than rendered
 * (such a name could otherwise be cut short where C strings are used and
 * spell another identity). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "openssl_int.h"

#define MAX_RENDERED 4096u /* longer identities are refused, not cut */
#define MAX_NAMES 256

static char *dup_bytes(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

static int clean_name(const unsigned char *p, size_t n) {
  if (!n || n > MAX_RENDERED)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] < 0x20 || p[i] == 0x7f || p[i] == ',')
      return 0; /* a ',' would split the joined list into two names */
  return 1;
}

/* The SANs of one GEN_* type, joined with ','. */
static int sans(X509 *cert, int type, char **out, size_t *len) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  if (!names)
    return REVTUN_E_NOT_FOUND;
  char buf[MAX_RENDERED];
  size_t n = 0;
  int count = sk_GENERAL_NAME_num(names), used = 0;
  for (int i = 0; i < count && i < MAX_NAMES; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type != type)
      continue;
    const ASN1_IA5STRING *s = type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
    const unsigned char *p = ASN1_STRING_get0_data(s);
    size_t l = (size_t)ASN1_STRING_length(s);
    if (!clean_name(p, l))
      continue;
    if (n + (used ? 1 : 0) + l > sizeof(buf)) {
      GENERAL_NAMES_free(names);
      return REVTUN_E_NOT_FOUND; /* too long to render whole */
    }
    if (used++)
      buf[n++] = ',';
    memcpy(buf + n, p, l);
    n += l;
  }
  GENERAL_NAMES_free(names);
  if (!used)
    return REVTUN_E_NOT_FOUND;
  *out = dup_bytes(buf, n);
  *len = n;
  return *out ? REVTUN_OK : REVTUN_E_NOMEM;
}

static int name_rfc2253(const X509_NAME *name, char **out, size_t *len) {
  BIO *b = BIO_new(BIO_s_mem());
  if (!b)
    return REVTUN_E_NOMEM;
  int rc = REVTUN_E_NOT_FOUND;
  if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0 && (size_t)n <= MAX_RENDERED) {
      *out = dup_bytes(p, (size_t)n);
      *len = (size_t)n;
      rc = *out ? REVTUN_OK : REVTUN_E_NOMEM;
    }
  }
  BIO_free(b);
  return rc;
}

static void lower_hex(const unsigned char *p, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[p[i] >> 4];
    out[2 * i + 1] = hex[p[i] & 15];
  }
}

static int fingerprint(X509 *cert, char **out, size_t *len) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1 || n != 32)
    return REVTUN_E_NOT_FOUND;
  char hex[64];
  lower_hex(md, n, hex);
  *out = dup_bytes(hex, 64);
  *len = 64;
  return *out ? REVTUN_OK : REVTUN_E_NOMEM;
}

/* As OpenSSL's BN_bn2hex prints it, lowercased. */
static int serial(X509 *cert, char **out, size_t *len) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  BN_free(bn);
  if (!hex)
    return REVTUN_E_NOT_FOUND;
  size_t n = strlen(hex);
  for (size_t i = 0; i < n; i++)
    if (hex[i] >= 'A' && hex[i] <= 'F')
      hex[i] = (char)(hex[i] - 'A' + 'a');
  *out = dup_bytes(hex, n);
  *len = n;
  OPENSSL_free(hex);
  return *out ? REVTUN_OK : REVTUN_E_NOMEM;
}

static int epoch_seconds(const ASN1_TIME *t, char **out, size_t *len) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
    return REVTUN_E_NOT_FOUND;
  time_t s = timegm(&tm);
  char buf[32];
  int n = snprintf(buf, sizeof(buf), "%lld", (long long)s);
  *out = dup_bytes(buf, (size_t)n);
  *len = (size_t)n;
  return *out ? REVTUN_OK : REVTUN_E_NOMEM;
}

int rto_peer_field(SSL *ssl, int field, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  if (field == REVTUN_PEER_TLS_VERSION) {
    const char *v = SSL_get_version(ssl);
    if (!v)
      return REVTUN_E_NOT_FOUND;
    *len = strlen(v);
    *out = dup_bytes(v, *len);
    return *out ? REVTUN_OK : REVTUN_E_NOMEM;
  }
  X509 *cert = SSL_get0_peer_certificate(ssl);
  if (!cert)
    return REVTUN_E_NOT_FOUND;
  int rc;
  switch (field) {
  case REVTUN_PEER_URI_SAN: rc = sans(cert, GEN_URI, out, len); break;
  case REVTUN_PEER_DNS_SAN: rc = sans(cert, GEN_DNS, out, len); break;
  case REVTUN_PEER_SUBJECT: rc = name_rfc2253(X509_get_subject_name(cert), out, len); break;
  case REVTUN_PEER_ISSUER: rc = name_rfc2253(X509_get_issuer_name(cert), out, len); break;
  case REVTUN_PEER_FINGERPRINT_256: rc = fingerprint(cert, out, len); break;
  case REVTUN_PEER_SERIAL: rc = serial(cert, out, len); break;
  case REVTUN_PEER_CERT_V_START: rc = epoch_seconds(X509_get0_notBefore(cert), out, len); break;
  case REVTUN_PEER_CERT_V_END: rc = epoch_seconds(X509_get0_notAfter(cert), out, len); break;
  default: rc = REVTUN_E_NOT_FOUND; break;
  }
  ERR_clear_error();
  return rc;
}

/* Exact (DNS: ASCII case-insensitive) equality; no wildcards: a node id is a
 * name, not a pattern. */
static int same(const unsigned char *p, size_t n, const char *id, size_t id_len, int fold) {
  if (n != id_len)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char a = p[i], b = (unsigned char)id[i];
    if (fold) {
      a = (unsigned char)(a >= 'A' && a <= 'Z' ? a + 32 : a);
      b = (unsigned char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
    }
    if (a != b)
      return 0;
  }
  return 1;
}

int rto_cert_names(X509 *cert, const char *id, size_t id_len, int flags) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  if (!names)
    return 0;
  int found = 0, count = sk_GENERAL_NAME_num(names);
  for (int i = 0; i < count && i < MAX_NAMES && !found; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS && (flags & REVTUN_OPENSSL_NODE_DNS_SAN))
      found = same(ASN1_STRING_get0_data(g->d.dNSName), (size_t)ASN1_STRING_length(g->d.dNSName),
                   id, id_len, 1);
    else if (g->type == GEN_URI && (flags & REVTUN_OPENSSL_NODE_URI_SAN))
      found = same(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                   (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier), id, id_len, 0);
  }
  GENERAL_NAMES_free(names);
  return found;
}
