/* The rules every node, cluster and tenant id obeys wherever it enters the
 * library (a public lookup, a registration, a handshake header), and the
 * tenant-scoped keys the pool files sockets under.
 *
 * An id is 1..RT_MAX_ID_LEN bytes with no NUL. With tenant isolation, no id
 * and no tenant may contain ':' and every registration and lookup names a
 * non-empty tenant, so the key "tenant:id" is unambiguous: a caller-chosen
 * id can never spell another tenant's key. Without isolation the tenant is
 * optional and keys are the bare ids. */
#ifndef REVTUN_BASE_IDS_H
#define REVTUN_BASE_IDS_H

#include <stdbool.h>
#include <stddef.h>

#define RT_MAX_ID_LEN 1024u
/* "tenant" ":" "id" at their longest */
#define RT_MAX_KEY_LEN (2u * RT_MAX_ID_LEN + 1u)

/* A checked (tenant, id) pair with their lengths. */
struct rt_idpair {
  const char *tenant; /* "" when none */
  const char *id;
  size_t tenant_len, id_len;
  bool scoped; /* the key is "tenant:id" */
};

/* Checks one id and its tenant under the rules above; REVTUN_OK or
 * REVTUN_E_INVAL. Reads at most RT_MAX_ID_LEN + 1 bytes of each string. */
int rt_ids_check(bool isolation, const char *id, const char *tenant, struct rt_idpair *out);

/* An optional id that rides along (initiator worker or connection id):
 * NULL or at most RT_MAX_ID_LEN bytes. */
bool rt_ids_optional_ok(const char *s);

/* Writes the pool key of a checked pair into buf (RT_MAX_KEY_LEN + 1 bytes),
 * NUL-terminated; returns its length. */
size_t rt_ids_key(const struct rt_idpair *p, char *buf);

#endif
