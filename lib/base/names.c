/* Version, status strings and the names of every enum value. All total:
 * an unknown value gets a fixed fallback string, never NULL. */
#include "base/macros.h"
#include "revtun/revtun.h"

const char *revtun_version(int *num_out) {
  if (num_out)
    *num_out = REVTUN_VERSION_NUM;
  return REVTUN_VERSION_STR;
}

struct status_text {
  int status;
  const char *name;
  const char *text;
};

static const struct status_text statuses[] = {
    {REVTUN_OK, "REVTUN_OK", "success"},
    {REVTUN_E_INVAL, "REVTUN_E_INVAL", "invalid argument"},
    {REVTUN_E_NOMEM, "REVTUN_E_NOMEM", "out of memory"},
    {REVTUN_E_CONFIG, "REVTUN_E_CONFIG", "invalid configuration"},
    {REVTUN_E_NOT_FOUND, "REVTUN_E_NOT_FOUND", "not found"},
    {REVTUN_E_EXISTS, "REVTUN_E_EXISTS", "already exists"},
    {REVTUN_E_RECURSIVE, "REVTUN_E_RECURSIVE", "not allowed from inside a callback"},
    {REVTUN_E_STATE, "REVTUN_E_STATE", "handle is being freed or unusable"},
    {REVTUN_E_HOST, "REVTUN_E_HOST", "a host callback failed"},
    {REVTUN_E_IO, "REVTUN_E_IO", "system call failed"},
    {REVTUN_E_UNSUPPORTED, "REVTUN_E_UNSUPPORTED", "not supported"},
    {REVTUN_E_LIMIT, "REVTUN_E_LIMIT", "limit reached"},
    {REVTUN_E_PROTOCOL, "REVTUN_E_PROTOCOL", "protocol violation by the peer"},
    {REVTUN_E_NOSPACE, "REVTUN_E_NOSPACE", "buffer too small"},
    {REVTUN_E_PENDING, "REVTUN_E_PENDING", "answer pending"},
};

static const struct status_text *find_status(int status) {
  for (size_t i = 0; i < RT_COUNT_OF(statuses); i++)
    if (statuses[i].status == status)
      return &statuses[i];
  return NULL;
}

const char *revtun_strerror(int status) {
  const struct status_text *s = find_status(status);
  return s ? s->text : "unknown status";
}

const char *revtun_status_name(int status) {
  const struct status_text *s = find_status(status);
  return s ? s->name : "REVTUN_E_UNKNOWN";
}

const char *revtun_event_kind_name(int kind) {
  switch (kind) {
  case REVTUN_EV_TUNNEL_SETUP: return "tunnel_setup";
  case REVTUN_EV_PING_SENT: return "idle_ping_sent";
  case REVTUN_EV_PING_ACK: return "idle_ping_ack";
  case REVTUN_EV_PING_MISS: return "idle_ping_miss";
  case REVTUN_EV_PING_TIMEOUT: return "idle_ping_timeout";
  case REVTUN_EV_SOCKET_HANDOFF: return "socket_handoff";
  case REVTUN_EV_TUNNEL_CLOSED: return "tunnel_closed";
  case REVTUN_EV_H2_KEEPALIVE_TIMEOUT: return "http2_keepalive_timeout";
  case REVTUN_EV_HANDSHAKE_FAILED: return "handshake_failed";
  case REVTUN_EV_SOCKET_EXPORTED: return "socket_exported";
  case REVTUN_EV_SOCKET_IMPORTED: return "socket_imported";
  case REVTUN_EV_REPORT_CONNECTED: return "connected";
  case REVTUN_EV_REPORT_DISCONNECTED: return "disconnected";
  case REVTUN_EV_REPORT_GOAWAY: return "goaway";
  case REVTUN_EV_REPORT_SERVER_INITIALIZED: return "server_initialized";
  default: return "unknown";
  }
}

const char *revtun_close_reason_name(int reason) {
  switch (reason) {
  case REVTUN_CLOSE_NONE: return "";
  case REVTUN_CLOSE_IDLE_PEER_CLOSE: return "idle_peer_close";
  case REVTUN_CLOSE_IDLE_READ_ERROR: return "idle_read_error";
  case REVTUN_CLOSE_IDLE_PING_WRITE_FAILURE: return "idle_ping_write_failure";
  case REVTUN_CLOSE_IDLE_PING_TIMEOUT: return "idle_ping_timeout";
  case REVTUN_CLOSE_IDLE_UNEXPECTED_DATA: return "idle_unexpected_data";
  case REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD: return "idle_keepalive_flood";
  case REVTUN_CLOSE_REMOTE_CLOSE: return "remote_close";
  case REVTUN_CLOSE_LOCAL_CLOSE: return "local_close";
  case REVTUN_CLOSE_EXPLICIT_CLOSE: return "explicit_close";
  case REVTUN_CLOSE_SHUTDOWN: return "shutdown";
  case REVTUN_CLOSE_HTTP2_PING_TIMEOUT: return "http2_ping_timeout";
  case REVTUN_CLOSE_MOVE_FAILED: return "move_failed";
  default: return "unknown";
  }
}

const char *revtun_socket_state_name(int state) {
  switch (state) {
  case REVTUN_SOCK_IDLE: return "idle";
  case REVTUN_SOCK_HANDED_OFF: return "handed_off";
  case REVTUN_SOCK_IN_USE: return "in_use";
  default: return "unknown";
  }
}
