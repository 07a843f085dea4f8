#include "tls_end.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <tls.h>
#include <unistd.h>
#include "tls_common.h"
#include "ucspi_tls.h"

#define RELAY_BUF 65536
#define RECORD_MAX 16384     /* a TLS record's plaintext: tls_read gets room for a whole one */
#define LINGER_MS 5000       /* after our close_notify, for the client's end */

static void why_set(stralloc *why, const char *a, const char *b)
{
  why->len = 0;
  if (!stralloc_cats(why, a) || (b && (!stralloc_cats(why, ": ") || !stralloc_cats(why, b))))
    why->len = 0;
}

/* libtls's error text without the prefix our own log line already says */
static const char *tls_why(struct tls *ctx, const char *prefix)
{
  const char *e = ctx ? tls_error(ctx) : 0;
  size_t n = strlen(prefix);
  if (!e) return "unknown error";
  return strncmp(e, prefix, n) == 0 ? e + n : e;
}

static void nonblocking(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- the network, for libtls ----
 * recv/send with MSG_DONTWAIT leave the socket's own flags alone: before TLS
 * the app shares this socket (fds 0/1) and must keep its blocking reads.
 * Anything that is not a socket falls back to O_NONBLOCK and read/write. */

static ssize_t net_read(struct tls *ctx, void *buf, size_t len, void *arg)
{
  struct tls_end *t = arg;
  (void)ctx;
  for (;;) {
    ssize_t n = t->in_is_socket ? recv(t->net_in, buf, len, MSG_DONTWAIT) : read(t->net_in, buf, len);
    if (n > 0) { t->moved += (size_t)n; return n; }
    if (n == 0) { t->net_eof = 1; return 0; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return TLS_WANT_POLLIN;
    if (errno == ENOTSOCK && t->in_is_socket) { t->in_is_socket = 0; nonblocking(t->net_in); continue; }
    if (errno == ECONNRESET) t->net_eof = 1;
    return -1;
  }
}

static ssize_t net_write(struct tls *ctx, const void *buf, size_t len, void *arg)
{
  struct tls_end *t = arg;
  (void)ctx;
  for (;;) {
    ssize_t n = t->out_is_socket ? send(t->net_out, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                                 : write(t->net_out, buf, len);
    if (n >= 0) { t->moved += (size_t)n; t->sent += (size_t)n; return n; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return TLS_WANT_POLLOUT;
    if (errno == ENOTSOCK && t->out_is_socket) { t->out_is_socket = 0; nonblocking(t->net_out); continue; }
    return -1;
  }
}

/* ---- set-up and handshake ---- */

int tls_end_configure(struct tls_end *t, const struct pem_file *cert, const struct pem_file *key,
                      stralloc *why)
{
  struct tls_config *cfg = tls_config_new();
  int ok = 0;

  t->server = 0;
  t->conn = 0;
  if (!cfg) { why_set(why, "cannot set up TLS", "out of memory"); return 0; }
  if (tls_config_set_keypair_mem(cfg, (const uint8_t *)cert->s, cert->len,
                                 (const uint8_t *)key->s, key->len) < 0
      || tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 | TLS_PROTOCOL_TLSv1_3) < 0) {
    why_set(why, "cannot use the certificate or key", tls_config_error(cfg) ? tls_config_error(cfg) : "unknown error");
    goto done;
  }
  /* Ask for a client certificate and take any: its subject and hash are
   * reported to the app, never trusted here. */
  tls_config_verify_client_optional(cfg);
  tls_config_insecure_noverifycert(cfg);
  t->server = tls_server();
  if (!t->server) { why_set(why, "cannot set up TLS", "out of memory"); goto done; }
  if (tls_configure(t->server, cfg) < 0) {
    why_set(why, "cannot use the certificate or key", tls_why(t->server, ""));
    goto done;
  }
  ok = 1;
done:
  tls_config_free(cfg);   /* its copy of the key is cleared */
  if (!ok) { tls_free(t->server); t->server = 0; }
  return ok;
}

int tls_end_handshake(struct tls_end *t, deadline_t deadline, stralloc *why)
{
  int one = 1;
  t->in_is_socket = t->out_is_socket = 1;
  /* TLS writes whole records; Nagle would hold a short one back for an ACK */
  setsockopt(t->net_out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (tls_accept_cbs(t->server, &t->conn, net_read, net_write, t) < 0) {
    why_set(why, "TLS handshake failed", tls_why(t->server, ""));
    return 0;
  }
  for (;;) {
    int r = tls_handshake(t->conn), fd;
    short ev;
    if (r == 0) return 1;
    if (r == TLS_WANT_POLLIN) { fd = t->net_in; ev = POLLIN; }
    else if (r == TLS_WANT_POLLOUT) { fd = t->net_out; ev = POLLOUT; }
    else {
      why_set(why, "TLS handshake failed", t->net_eof ? "the client closed the connection"
                                                      : tls_why(t->conn, "handshake failed: "));
      return 0;
    }
    int w = fd_wait(fd, ev, deadline);
    if (w == 0) { why_set(why, "TLS handshake timed out", 0); return 0; }
    if (w < 0) { why_set(why, "TLS handshake failed", strerror(errno)); return 0; }
  }
}

int tls_end_details(struct tls_end *t, stralloc *d)
{
  const char *version = tls_conn_version(t->conn), *cipher = tls_conn_cipher(t->conn);
  const char *sni = tls_conn_servername(t->conn);
  if (!ucspi_tls_detail_cat(d, "SSL_PROTOCOL", version ? version : "unknown", 64)
      || !ucspi_tls_detail_cat(d, "SSL_CIPHER", cipher ? cipher : "unknown", 128))
    return 0;
  if (sni && *sni && !ucspi_tls_detail_cat(d, "SSL_TLS_SNI_SERVERNAME", sni, 255)) return 0;
  if (tls_peer_cert_provided(t->conn)) {
    const char *hash = tls_peer_cert_hash(t->conn), *subject = tls_peer_cert_subject(t->conn);
    if (hash && !ucspi_tls_detail_cat(d, "SSL_PEER_CERT_HASH", hash, 128)) return 0;
    if (subject && !ucspi_tls_detail_cat(d, "SSL_PEER_CERT_SUBJECT", subject, UCSPI_TLS_VALUE_MAX))
      return 0;
  }
  return ucspi_tls_details_end(d);
}

/* ---- the relay ---- */

/* One direction's plaintext: [off, off+len) of buf is waiting. */
struct flow {
  char buf[RELAY_BUF];
  size_t off, len;
};

/* What a libtls call waits for: 0 = not blocked, try it; POLLIN; POLLOUT. */
static short wants(ssize_t r)
{
  return r == TLS_WANT_POLLIN ? POLLIN : r == TLS_WANT_POLLOUT ? POLLOUT : 0;
}

void tls_end_hang_up(struct tls_end *t)
{
  shutdown(t->net_in, SHUT_RDWR);
  if (t->net_out != t->net_in) shutdown(t->net_out, SHUT_RDWR);
}

void tls_end_relay(struct tls_end *t, int app_in, int app_out, int64_t idle_ms)
{
  static struct flow up, down;     /* app -> client, client -> app */
  int app_eof = 0, client_eof = 0, closed = 0;
  short rwant = 0, wwant = 0, cwant = 0;
  deadline_t idle = deadline_in(idle_ms), linger = DEADLINE_NONE;
  size_t seen = t->moved;          /* network bytes, counted by net_read/net_write */
  size_t seen_sent = t->sent;
  int progress = 0;                /* bytes to or from the app */

  up.off = up.len = down.off = down.len = 0;
  nonblocking(app_in);
  nonblocking(app_out);

  for (;;) {
    /* app -> client: the buffer stays put until tls_write took all of it,
     * as a retried write must see the same bytes */
    while (up.len && !wwant) {
      ssize_t r = tls_write(t->conn, up.buf + up.off, up.len);
      if (r >= 0) { up.off += (size_t)r; up.len -= (size_t)r; continue; }
      if (!(wwant = wants(r))) { tls_log("TLS write failed", tls_why(t->conn, "write failed: ")); goto hang_up; }
    }
    /* client -> app; once the app stopped reading, into the void */
    while (!client_eof && !rwant) {
      char *to = down.buf;
      size_t room = sizeof down.buf;
      if (app_out >= 0) {
        if (!down.len) down.off = 0;
        to = down.buf + down.off + down.len;
        room = sizeof down.buf - down.off - down.len;
        if (room < RECORD_MAX) break;
      }
      ssize_t r = tls_read(t->conn, to, room);
      if (r > 0) { if (app_out >= 0) down.len += (size_t)r; continue; }
      if ((rwant = wants(r))) break;
      /* 0: close_notify. An error at the connection's EOF is a client that
       * closed without close_notify, as many do after QUIT (SMTP knows its
       * own end); any other is worth a line. */
      if (r < 0 && !t->net_eof && !closed) tls_log("TLS read failed", tls_why(t->conn, "read failed: "));
      client_eof = 1;
    }

    /* the ends */
    if (client_eof && !down.len && app_out >= 0) { close(app_out); app_out = -1; }
    if (app_eof && !up.len && !closed && !cwant) {
      int r = tls_close(t->conn);
      if (!(cwant = wants(r))) {
        closed = 1;
        shutdown(t->net_out, SHUT_WR);
        linger = deadline_in(LINGER_MS < idle_ms ? LINGER_MS : idle_ms);
      }
    }
    if (closed && (client_eof || now_ms() >= linger)) break;
    /* progress restarts the idle limit; once the app reads no more, what
     * the client sends goes into the void and keeps nothing alive: only
     * what reaches the client still counts */
    if (progress || t->sent != seen_sent || (app_out >= 0 && t->moved != seen)) {
      idle = deadline_in(idle_ms);
      progress = 0;
    }
    seen = t->moved;
    seen_sent = t->sent;

    struct pollfd p[4];
    p[0].fd = app_in;
    p[0].events = (!app_eof && !up.len) ? POLLIN : 0;
    p[1].fd = app_out;
    p[1].events = (app_out >= 0 && down.len) ? POLLOUT : 0;
    p[2].fd = t->net_in;
    p[2].events = (rwant == POLLIN || wwant == POLLIN || cwant == POLLIN) ? POLLIN : 0;
    p[3].fd = t->net_out;
    p[3].events = (rwant == POLLOUT || wwant == POLLOUT || cwant == POLLOUT) ? POLLOUT : 0;
    for (int i = 0; i < 4; ++i) {
      p[i].revents = 0;
      if (!p[i].events) p[i].fd = -1;
    }

    deadline_t until = linger < idle ? linger : idle;
    int64_t left = until - now_ms();
    if (left <= 0) {
      if (until == idle) { tls_log("TLS connection idle past IDCHECK_TLS_IDLE", "closed"); goto hang_up; }
      break;
    }
    int n = poll(p, 4, left > 86400000 ? 86400000 : (int)left);
    if (n < 0 && errno != EINTR) { tls_log("poll failed", strerror(errno)); goto hang_up; }
    if (n <= 0) continue;

    if (p[0].revents) {
      ssize_t r = read(app_in, up.buf, sizeof up.buf);
      if (r > 0) { up.off = 0; up.len = (size_t)r; progress = 1; }
      else if (r == 0 || (errno != EAGAIN && errno != EINTR)) app_eof = 1;
    }
    if (p[1].revents) {
      ssize_t r = write(app_out, down.buf + down.off, down.len);
      if (r > 0) { down.off += (size_t)r; down.len -= (size_t)r; progress = 1; }
      else if (r < 0 && errno != EAGAIN && errno != EINTR) {
        /* the app stopped reading: what the client still sends is dropped */
        close(app_out);
        app_out = -1;
        down.len = 0;
      }
    }
    if (p[2].revents) {
      if (rwant == POLLIN) rwant = 0;
      if (wwant == POLLIN) wwant = 0;
      if (cwant == POLLIN) cwant = 0;
    }
    if (p[3].revents) {
      if (rwant == POLLOUT) rwant = 0;
      if (wwant == POLLOUT) wwant = 0;
      if (cwant == POLLOUT) cwant = 0;
    }
  }
  goto done;

hang_up:
  tls_end_hang_up(t);
done:
  close(app_in);
  if (app_out >= 0) close(app_out);
}

void tls_end_free(struct tls_end *t)
{
  tls_free(t->conn);
  tls_free(t->server);
  t->conn = t->server = 0;
}
