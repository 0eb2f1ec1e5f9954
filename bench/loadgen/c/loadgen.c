/*
 * kennel's C load generator: the loads of bench/loadgen/process.ts (hold, connects, echo, watch,
 * isOpen, tryConnect), driven the same way by the bench, at a fraction of the Node generator's
 * CPU per connect and per message, so that on a small machine the broker, not the generator, is
 * the limit.
 *
 * One process, one thread, epoll, non-blocking sockets, OpenSSL for mutual TLS (a full handshake
 * per connect, no resumption), and just enough MQTT 3.1.1 spoken by hand: CONNECT/CONNACK,
 * SUBSCRIBE/SUBACK, PUBLISH/PUBACK, PINGREQ/PINGRESP, DISCONNECT.
 *
 * The driver (bench/loadgen/cproc.ts) writes one request a line on stdin:
 *   <seq> <op> <name>=<value> ...      (values percent-encoded; lists comma-separated)
 * and reads one JSON object a line on stdout: {"seq":<seq>, ...} or {"seq":<seq>,"error":"..."}.
 * Requests are handled one at a time, in order. The process exits when stdin closes.
 *
 * Build: cc -O2 -o loadgen loadgen.c -lssl -lcrypto   (the bench does this on first use)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#define PAYLOAD_BYTES 64 /* send time (double LE) at 0, sequence number (u32 LE) at 8 */
#define KEEPALIVE_S 600
#define HANDSHAKE_TIMEOUT_MS 30000.0
#define CLOSING_TIMEOUT_MS 5000.0
#define STALL_MS 10000.0
#define MAX_ID 128 /* toy ids (client ids, and the topics built from them) fit the packet buffers below */

/* ---- small utilities ------------------------------------------------------------------------ */

static double mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* wall-clock ms, comparable with the driver's performance.timeOrigin + performance.now() */
static double wall_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s\n", what);
  exit(1);
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (!p && n) die("out of memory");
  return p;
}

typedef struct {
  uint8_t *b;
  size_t len, cap, off; /* off: bytes at the front already consumed (written, or parsed) */
} buf_t;

static void buf_reserve(buf_t *x, size_t more) {
  if (x->off > 0 && x->off == x->len) x->off = x->len = 0;
  if (x->len + more <= x->cap) return;
  if (x->off > 0) { /* compact first */
    memmove(x->b, x->b + x->off, x->len - x->off);
    x->len -= x->off;
    x->off = 0;
    if (x->len + more <= x->cap) return;
  }
  size_t cap = x->cap ? x->cap : 1024;
  while (cap < x->len + more) cap *= 2;
  x->b = xrealloc(x->b, cap);
  x->cap = cap;
}

static void buf_put(buf_t *x, const void *p, size_t n) {
  buf_reserve(x, n);
  memcpy(x->b + x->len, p, n);
  x->len += n;
}

static void buf_printf(buf_t *x, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = x->cap - x->len;
    va_start(ap, fmt);
    int n = vsnprintf((char *)x->b + x->len, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
      x->len += (size_t)n;
      return;
    }
    buf_reserve(x, n > 0 ? (size_t)n + 1 : 256);
  }
}

static void buf_free(buf_t *x) {
  free(x->b);
  memset(x, 0, sizeof *x);
}

/* ---- latency histogram (the same buckets as bench/loadgen/histogram.ts) --------------------- */

#define FINE_BUCKETS 10000 /* 10 µs up to 100 ms */
#define BUCKETS (FINE_BUCKETS + 59900) /* then 1 ms up to 60 s */
static uint32_t hist[BUCKETS];

static void hist_record(double ms) {
  long i = ms < 100 ? (ms > 0 ? (long)(ms / 0.01) : 0) : FINE_BUCKETS + (long)(ms - 100);
  if (i >= BUCKETS) i = BUCKETS - 1;
  hist[i]++;
}

static void hist_json(buf_t *o) {
  buf_printf(o, "[");
  int first = 1;
  for (int i = 0; i < BUCKETS; i++)
    if (hist[i]) {
      buf_printf(o, "%s[%d,%u]", first ? "" : ",", i, hist[i]);
      first = 0;
    }
  buf_printf(o, "]");
}

/* ---- outcome counts: {"refused (CONNACK 5)": 3, ...} ---------------------------------------- */

#define MAX_OUTCOMES 32
typedef struct {
  char name[MAX_OUTCOMES][128];
  long n[MAX_OUTCOMES];
  int used;
} counts_t;

static void counts_add(counts_t *c, const char *name) {
  for (int i = 0; i < c->used; i++)
    if (strcmp(c->name[i], name) == 0) {
      c->n[i]++;
      return;
    }
  int i = c->used < MAX_OUTCOMES ? c->used++ : MAX_OUTCOMES - 1;
  snprintf(c->name[i], sizeof c->name[i], "%s", name);
  c->n[i]++;
}

static void json_string(buf_t *o, const char *s) {
  buf_printf(o, "\"");
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') buf_printf(o, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) buf_printf(o, "\\u%04x", *s);
    else buf_put(o, s, 1);
  }
  buf_printf(o, "\"");
}

static void counts_json(buf_t *o, const counts_t *c) {
  buf_printf(o, "{");
  for (int i = 0; i < c->used; i++) {
    if (i) buf_printf(o, ",");
    json_string(o, c->name[i]);
    buf_printf(o, ":%ld", c->n[i]);
  }
  buf_printf(o, "}");
}

/* a JSON number, or null for NaN (as JSON.stringify does) */
static void json_num(buf_t *o, double x) {
  if (x != x) buf_printf(o, "null");
  else buf_printf(o, "%.3f", x);
}

/* ---- toys and connections -------------------------------------------------------------------- */

struct conn;
typedef struct {
  char *id;
  SSL_CTX *ctx; /* the toy's key and certificate, the CA that signs the server's */
  struct conn *held;
} toy_t;

static toy_t *toys;
static int ntoys;
static int target_port;

static toy_t *find_toy(const char *id) {
  for (int i = 0; i < ntoys; i++)
    if (strcmp(toys[i].id, id) == 0) return &toys[i];
  return NULL;
}

enum state { C_TCP, C_TLS, C_MQTT, C_OPEN, C_CLOSING, C_DEAD };
/* who the connection reports to */
enum role { R_HOLD, R_CONNECTS, R_ECHO, R_TRY, R_DETACHED };
/* what it reports */
enum event { EV_UP, EV_REFUSED, EV_DOWN };

struct echo;
typedef struct conn {
  int fd;
  SSL *ssl;
  toy_t *toy;
  enum state st;
  enum role role;
  int slot; /* connects: the loop it belongs to */
  struct echo *echo;
  double started; /* mono ms */
  double closed_at; /* wall ms */
  double last_write; /* mono ms, for PINGREQ */
  char outcome[160]; /* what refused or closed it */
  char error[128]; /* the first socket or TLS error */
  buf_t in, out;
  uint32_t interest;
  int ssl_wants_write;
  int shut_sent;
  int dirty;
  int failed_errno; /* a socket() or connect() that failed at once: reported later in the turn */
  int in_failed, free_after_fail; /* on the failed list: not freed before it was reported */
  struct conn *next_dirty, *prev_live, *next_live, *next_dead, *next_failed;
} conn_t;

static int ep;
static conn_t *live; /* every connection not yet dead */
static conn_t *dirty; /* connections with something to write this turn */
static conn_t *graveyard; /* dead, freed at the end of the turn */
static conn_t *failed; /* failed at once, reported at the end of the turn (never from inside conn_open) */
static int detached_open; /* connections closing on their own (after a disconnect) */

static void on_conn(conn_t *c, enum event ev);
static void on_packet(conn_t *c, uint8_t header, uint8_t *body, size_t len);
static void echo_fill(conn_t *c);

static const char *errno_code(int e) {
  switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EMFILE: return "EMFILE";
    default: return strerror(e);
  }
}

/* an OpenSSL error as Node names it: "sslv3 alert certificate revoked" → ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED */
static void ssl_code(char *out, size_t n) {
  unsigned long e = ERR_get_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  if (!reason) {
    snprintf(out, n, "ERR_SSL");
  } else {
    size_t at = (size_t)snprintf(out, n, "ERR_SSL_");
    for (; *reason && at + 1 < n; reason++) out[at++] = *reason == ' ' ? '_' : (char)(*reason >= 'a' && *reason <= 'z' ? *reason - 32 : *reason);
    out[at] = 0;
  }
  ERR_clear_error();
}

static void note_error(conn_t *c, const char *e) {
  if (!c->error[0] && e && e[0]) snprintf(c->error, sizeof c->error, "%s", e);
}

static void set_interest(conn_t *c, uint32_t ev) {
  if (c->fd < 0 || ev == c->interest) return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
  c->interest = ev;
}

static void mark_dirty(conn_t *c) {
  if (c->dirty || c->st == C_DEAD) return;
  c->dirty = 1;
  c->next_dirty = dirty;
  dirty = c;
}

static void conn_kill(conn_t *c, const char *error) {
  if (c->st == C_DEAD) return;
  note_error(c, error);
  int was_up = c->st == C_OPEN || c->st == C_CLOSING;
  if (c->ssl) SSL_free(c->ssl);
  if (c->fd >= 0) close(c->fd);
  c->ssl = NULL;
  c->fd = -1;
  c->st = C_DEAD;
  c->closed_at = wall_ms();
  buf_free(&c->in);
  buf_free(&c->out);
  if (c->prev_live) c->prev_live->next_live = c->next_live;
  else live = c->next_live;
  if (c->next_live) c->next_live->prev_live = c->prev_live;
  if (c->role == R_DETACHED) {
    detached_open--;
    c->next_dead = graveyard;
    graveyard = c;
    return;
  }
  if (!was_up) {
    snprintf(c->outcome, sizeof c->outcome, "closed before CONNACK%s%s%s", c->error[0] ? " (" : "", c->error, c->error[0] ? ")" : "");
    on_conn(c, EV_REFUSED);
  } else {
    on_conn(c, EV_DOWN);
  }
}

/* the owner lets go: a dead connection is freed at the end of the turn, a live one when it dies */
static void conn_detach(conn_t *c) {
  if (c->role == R_DETACHED) return;
  c->role = R_DETACHED;
  c->echo = NULL;
  if (c->st == C_DEAD) {
    c->next_dead = graveyard;
    graveyard = c;
  } else {
    detached_open++;
  }
}

static void fail_soon(conn_t *c, int e) {
  if (c->fd >= 0) close(c->fd); /* no events for it */
  c->fd = -1;
  c->in_failed = 1;
  c->failed_errno = e;
  c->next_failed = failed;
  failed = c;
}

static conn_t *conn_open(toy_t *toy, enum role role, int slot) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) die("out of memory");
  c->toy = toy;
  c->role = role;
  c->slot = slot;
  c->started = c->last_write = mono_ms();
  c->st = C_TCP;
  c->next_live = live;
  if (live) live->prev_live = c;
  live = c;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    fail_soon(c, errno);
    return c;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)target_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
  c->interest = EPOLLOUT;
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) fail_soon(c, errno);
  return c;
}

/* ---- MQTT 3.1.1 packets ---------------------------------------------------------------------- */

static size_t put_length(uint8_t *p, size_t n) { /* remaining length, §2.2.3 */
  size_t i = 0;
  do {
    uint8_t b = n % 128;
    n /= 128;
    p[i++] = (uint8_t)(b | (n ? 0x80 : 0));
  } while (n);
  return i;
}

static void put_packet(buf_t *o, uint8_t header, const uint8_t *body, size_t len) {
  uint8_t h[5];
  h[0] = header;
  size_t n = 1 + put_length(h + 1, len);
  buf_put(o, h, n);
  buf_put(o, body, len);
}

static size_t put_string(uint8_t *p, const char *s) {
  size_t n = strlen(s);
  p[0] = (uint8_t)(n >> 8);
  p[1] = (uint8_t)n;
  memcpy(p + 2, s, n);
  return n + 2;
}

static void send_connect(conn_t *c) {
  uint8_t body[400];
  size_t n = put_string(body, "MQTT");
  body[n++] = 4; /* protocol level 3.1.1 */
  body[n++] = 0x02; /* clean session */
  body[n++] = KEEPALIVE_S >> 8;
  body[n++] = KEEPALIVE_S & 0xff;
  n += put_string(body + n, c->toy->id);
  put_packet(&c->out, 0x10, body, n);
}

static void send_subscribe(conn_t *c, const char *topic, int qos) {
  uint8_t body[300];
  body[0] = 0;
  body[1] = 1; /* packet id */
  size_t n = 2 + put_string(body + 2, topic);
  body[n++] = (uint8_t)qos;
  put_packet(&c->out, 0x82, body, n);
}

static void send_puback(conn_t *c, uint16_t id) {
  uint8_t p[4] = {0x40, 2, (uint8_t)(id >> 8), (uint8_t)id};
  buf_put(&c->out, p, 4);
}

/* ---- TLS and socket I/O ---------------------------------------------------------------------- */

static void conn_flush(conn_t *c);

static void update_interest(conn_t *c) {
  if (c->st == C_DEAD || c->st == C_TCP || c->st == C_TLS) return;
  int want_out = c->ssl_wants_write || (c->out.len > c->out.off && !c->shut_sent);
  set_interest(c, EPOLLIN | (want_out ? EPOLLOUT : 0));
}

static void cork(conn_t *c, int on) {
  setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

/* Corked while OpenSSL writes, so that the client's last flight and CONNECT leave in one
 * segment, as Node's do: a server that refuses the certificate then reads both and closes with
 * a FIN, and its alert arrives (sent separately, CONNECT would be unread at its close, which
 * turns the close into a reset that can discard the alert). */
static void handshake(conn_t *c) {
  ERR_clear_error();
  errno = 0;
  cork(c, 1);
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->st = C_MQTT;
    send_connect(c);
    conn_flush(c);
    if (c->st != C_DEAD) cork(c, 0);
    return;
  }
  if (c->fd >= 0) cork(c, 0);
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) set_interest(c, EPOLLIN);
  else if (e == SSL_ERROR_WANT_WRITE) set_interest(c, EPOLLIN | EPOLLOUT);
  else {
    char code[128];
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) snprintf(code, sizeof code, "%s", errno ? errno_code(errno) : "ECONNRESET");
    else ssl_code(code, sizeof code);
    conn_kill(c, code);
  }
}

static void tcp_connected(conn_t *c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    conn_kill(c, errno_code(err));
    return;
  }
  c->ssl = SSL_new(c->toy->ctx);
  if (!c->ssl) die("SSL_new failed");
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  SSL_set_tlsext_host_name(c->ssl, "localhost");
  SSL_set1_host(c->ssl, "localhost"); /* the server's certificate must name localhost */
  c->st = C_TLS;
  handshake(c);
}

/* an SSL_read or SSL_write that did not go through: wait, or the connection is over */
static int io_failed(conn_t *c, int r) {
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) return 0;
  if (e == SSL_ERROR_WANT_WRITE) {
    c->ssl_wants_write = 1;
    return 0;
  }
  char code[128] = "";
  if (e == SSL_ERROR_ZERO_RETURN) code[0] = 0; /* close_notify */
  else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) snprintf(code, sizeof code, "%s", errno && r < 0 ? errno_code(errno) : "");
  else ssl_code(code, sizeof code);
  conn_kill(c, code);
  return -1;
}

/* write what is queued; once a closing connection's queue is empty, close_notify and FIN */
static void conn_flush(conn_t *c) {
  if (c->st == C_DEAD || !c->ssl || c->st == C_TLS || c->st == C_TCP) return;
  while (c->out.len > c->out.off && !c->shut_sent) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(c->ssl, c->out.b + c->out.off, (int)(c->out.len - c->out.off));
    if (r > 0) {
      c->out.off += (size_t)r;
      c->last_write = mono_ms();
    } else if (io_failed(c, r) < 0) {
      return;
    } else {
      break;
    }
  }
  if (c->out.off == c->out.len) c->out.off = c->out.len = 0;
  if (c->st == C_CLOSING && c->out.len == 0 && !c->shut_sent) {
    c->shut_sent = 1;
    SSL_shutdown(c->ssl); /* sends close_notify; the peer's is not waited for */
    ERR_clear_error();
    shutdown(c->fd, SHUT_WR);
  }
  update_interest(c);
}

/* split the received bytes into MQTT packets; a partial packet waits for more */
static void parse_packets(conn_t *c) {
  buf_t *in = &c->in;
  while (c->st != C_DEAD && in->len - in->off >= 2) {
    uint8_t *p = in->b + in->off;
    size_t avail = in->len - in->off, length = 0, i = 1, mult = 1;
    int done = 0;
    for (; i < avail && i <= 4; i++) {
      length += (p[i] & 0x7f) * mult;
      mult *= 128;
      if (!(p[i] & 0x80)) {
        done = 1;
        i++;
        break;
      }
    }
    if (!done) {
      if (i > 4) conn_kill(c, "malformed remaining length");
      return;
    }
    if (avail - i < length) return;
    in->off += i + length;
    on_packet(c, p[0], p + i, length);
  }
  if (c->st != C_DEAD && in->off == in->len) in->off = in->len = 0;
}

static void conn_read(conn_t *c) {
  if (c->shut_sent) { /* closing: drain until the peer's FIN, then close */
    char sink[4096];
    for (;;) {
      ssize_t n = read(c->fd, sink, sizeof sink);
      if (n > 0) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      conn_kill(c, n < 0 ? errno_code(errno) : "");
      return;
    }
  }
  for (;;) {
    buf_reserve(&c->in, 16384);
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(c->ssl, c->in.b + c->in.len, (int)(c->in.cap - c->in.len));
    if (r <= 0) {
      io_failed(c, r);
      return;
    }
    c->in.len += (size_t)r;
    parse_packets(c);
    if (c->st == C_DEAD || c->shut_sent) return;
  }
}

static void conn_event(conn_t *c, uint32_t events) {
  if (c->st == C_DEAD) return;
  if (c->st == C_TCP) {
    tcp_connected(c);
    return;
  }
  if (c->st == C_TLS) {
    handshake(c);
    return;
  }
  /* an SSL_read or SSL_write that wanted to write is retried once the socket is writable */
  int retry = c->ssl_wants_write && (events & EPOLLOUT);
  c->ssl_wants_write = 0;
  if (retry || (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) conn_read(c);
  if (c->st != C_DEAD) conn_flush(c);
}

/* DISCONNECT, then close_notify and FIN once it is written; the socket closes when the peer's FIN arrives */
static void conn_disconnect(conn_t *c) {
  if (c->st == C_DEAD || c->st == C_CLOSING) return;
  if (c->st != C_OPEN) {
    conn_kill(c, "");
    return;
  }
  static const uint8_t disconnect[2] = {0xe0, 0};
  buf_put(&c->out, disconnect, 2);
  c->st = C_CLOSING;
  c->started = mono_ms();
  conn_flush(c);
}

/* ---- the driver's requests ------------------------------------------------------------------- */

typedef struct {
  long seq;
  char op[32];
  char *names[16], *values[16];
  int n;
} request_t;

static const char *param(const request_t *r, const char *name) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->names[i], name) == 0) return r->values[i];
  return NULL;
}

static double num(const request_t *r, const char *name) {
  const char *v = param(r, name);
  return v ? atof(v) : 0;
}

/* the toys named in a comma-separated list */
static toy_t **toy_list(const char *ids, int *count, char *err, size_t errn) {
  int cap = 1;
  for (const char *p = ids; p && *p; p++) cap += *p == ',';
  toy_t **list = calloc((size_t)cap, sizeof *list);
  int n = 0;
  char *copy = strdup(ids ? ids : ""), *save = NULL;
  for (char *id = strtok_r(copy, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
    toy_t *t = find_toy(id);
    if (!t) {
      snprintf(err, errn, "unknown toy %s", id);
      free(copy);
      free(list);
      return NULL;
    }
    list[n++] = t;
  }
  free(copy);
  *count = n;
  return list;
}

static buf_t reply;
static void reply_begin(long seq) {
  reply.len = reply.off = 0;
  buf_printf(&reply, "{\"seq\":%ld", seq);
}
static void reply_end(void) {
  buf_printf(&reply, "}\n");
  size_t at = 0;
  while (at < reply.len) {
    ssize_t n = write(1, reply.b + at, reply.len - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) exit(0); /* the driver is gone */
    at += (size_t)n;
  }
}
static void reply_error(long seq, const char *message) {
  reply_begin(seq);
  buf_printf(&reply, ",\"error\":");
  json_string(&reply, message);
  reply_end();
}

/* the request in progress, if any: only one at a time */
enum op_kind { OP_NONE, OP_HOLD, OP_RELEASE, OP_WATCH, OP_TRY, OP_CONNECTS, OP_ECHO_PREPARE, OP_ECHO_MEASURE };
static struct {
  enum op_kind kind;
  long seq;
  toy_t **list;
  int n, next, active, concurrency;
  counts_t counts;
  double cpu0, t0, deadline;
  toy_t *toy;
} op;

static void op_done(void) {
  free(op.list);
  memset(&op, 0, sizeof op);
}

/* -- init: toys=<file of "toy <id>" lines, each followed by its key and certificate(s) in PEM> ca=<PEM file> */

static SSL_CTX *toy_context(X509_STORE *store, BIO *bio, char *err, size_t errn) {
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  X509 *cert = key ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  if (!cert) {
    snprintf(err, errn, "a toy without a key and certificate");
    EVP_PKEY_free(key);
    return NULL;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set1_cert_store(ctx, store);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* a full handshake every time */
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* a FIN without close_notify is a close, as in Node */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
    snprintf(err, errn, "key and certificate do not match");
    SSL_CTX_free(ctx);
    ctx = NULL;
  }
  X509 *chain;
  while (ctx && (chain = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) SSL_CTX_add0_chain_cert(ctx, chain);
  ERR_clear_error();
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

static void do_init(const request_t *r) {
  char err[256] = "";
  const char *toys_file = param(r, "toys"), *ca_file = param(r, "ca");
  X509_STORE *store = X509_STORE_new();
  if (!ca_file || X509_STORE_load_file(store, ca_file) != 1) {
    X509_STORE_free(store);
    reply_error(r->seq, "cannot read the CA file");
    return;
  }
  FILE *f = toys_file ? fopen(toys_file, "rb") : NULL;
  if (!f) {
    X509_STORE_free(store);
    reply_error(r->seq, "cannot read the toys file");
    return;
  }
  buf_t text = {0};
  char chunk[65536];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&text, chunk, got);
  fclose(f);
  buf_put(&text, "\0", 1);
  /* records start at lines "toy <id>" */
  for (char *at = strstr((char *)text.b, "toy "); at && !err[0];) {
    char *eol = strchr(at, '\n');
    if (!eol) break;
    *eol = 0;
    if (strlen(at + 4) > MAX_ID) {
      snprintf(err, sizeof err, "a toy id longer than %d bytes", MAX_ID);
      break;
    }
    char *next = strstr(eol + 1, "\ntoy ");
    size_t len = next ? (size_t)(next + 1 - (eol + 1)) : strlen(eol + 1);
    BIO *bio = BIO_new_mem_buf(eol + 1, (int)len);
    SSL_CTX *ctx = toy_context(store, bio, err, sizeof err);
    BIO_free(bio);
    if (ctx) {
      toys = xrealloc(toys, (size_t)(ntoys + 1) * sizeof *toys);
      toys[ntoys++] = (toy_t){.id = strdup(at + 4), .ctx = ctx};
    }
    at = next ? next + 1 : NULL;
  }
  buf_free(&text);
  X509_STORE_free(store); /* each context holds its own reference */
  if (err[0]) {
    reply_error(r->seq, err);
    return;
  }
  reply_begin(r->seq);
  buf_printf(&reply, ",\"toys\":%d", ntoys);
  reply_end();
}

/* -- hold: connect these toys and keep them connected, `concurrency` at a time */

static void hold_next(void) {
  while (op.next < op.n && op.active < op.concurrency) {
    toy_t *t = op.list[op.next++];
    op.active++;
    conn_open(t, R_HOLD, 0);
  }
  if (op.next >= op.n && op.active == 0) {
    int held = 0;
    for (int i = 0; i < ntoys; i++) held += toys[i].held != NULL;
    reply_begin(op.seq);
    buf_printf(&reply, ",\"held\":%d,\"refused\":", held);
    counts_json(&reply, &op.counts);
    buf_printf(&reply, ",\"cpuMs\":%.3f,\"wallMs\":%.3f", cpu_ms() - op.cpu0, mono_ms() - op.t0);
    reply_end();
    op_done();
  }
}

static void hold_event(conn_t *c, enum event ev) {
  if (ev == EV_DOWN) return; /* a held session closed: watch and isOpen see it */
  if (ev == EV_UP) {
    if (c->toy->held) conn_detach(c->toy->held), conn_disconnect(c->toy->held);
    c->toy->held = c;
  } else {
    counts_add(&op.counts, c->outcome);
    conn_detach(c);
  }
  op.active--;
  hold_next();
}

/* -- release: disconnect every held session, answer when they closed (at most 10 s) */

static void release_tick(void) {
  if (detached_open == 0 || mono_ms() > op.deadline) {
    reply_begin(op.seq);
    reply_end();
    op_done();
  }
}

static void do_release(const request_t *r) {
  for (int i = 0; i < ntoys; i++) {
    conn_t *c = toys[i].held;
    if (!c) continue;
    toys[i].held = NULL;
    conn_detach(c);
    conn_disconnect(c);
  }
  op.kind = OP_RELEASE;
  op.seq = r->seq;
  op.deadline = mono_ms() + 10000;
  release_tick();
}

/* -- watch: the wall-clock time the held session of this toy closes (null after timeoutMs) */

static void watch_answer(double closed_at) {
  reply_begin(op.seq);
  buf_printf(&reply, ",\"closedAt\":");
  json_num(&reply, closed_at);
  reply_end();
  conn_t *c = op.toy->held;
  if (c && c->st == C_DEAD) {
    op.toy->held = NULL;
    conn_detach(c);
  }
  op_done();
}

static void watch_tick(void) {
  conn_t *c = op.toy->held;
  if (!c) watch_answer(NAN);
  else if (c->st == C_DEAD) watch_answer(c->closed_at);
  else if (mono_ms() > op.deadline) watch_answer(NAN);
}

/* -- tryConnect: one connect; an accepted session is disconnected at once */

static void try_event(conn_t *c, enum event ev) {
  if (ev == EV_DOWN) return;
  reply_begin(op.seq);
  buf_printf(&reply, ",\"outcome\":");
  json_string(&reply, ev == EV_UP ? "accepted" : c->outcome);
  reply_end();
  conn_detach(c);
  conn_disconnect(c);
  op_done();
}

/* -- connects: `inFlight` loops each taking the next toy of its share: handshake, CONNECT,
 * CONNACK, DISCONNECT, and the next at once; CONNACKs inside the measured interval count */

static struct {
  int slots;
  long *turn; /* per slot: how many connects it started */
  double measure_from, measure_until; /* mono ms */
  double window0, window1, cpu0, cpu1;
  int measuring_started, measuring_ended, open_slots;
  long connects;
} cn;

static void connects_start_slot(int slot) {
  if (mono_ms() >= cn.measure_until) {
    cn.open_slots--;
    return;
  }
  /* slot s owns toys s, s + slots, s + 2 × slots, …: one toy never connects twice at once */
  int share = (op.n - slot + cn.slots - 1) / cn.slots;
  toy_t *t = op.list[slot + (int)(cn.turn[slot]++ % share) * cn.slots];
  conn_open(t, R_CONNECTS, slot);
}

static void connects_tick(void) {
  double now = mono_ms();
  if (!cn.measuring_started && now >= cn.measure_from) {
    cn.measuring_started = 1;
    cn.cpu0 = cpu_ms();
    cn.window0 = wall_ms();
  }
  if (!cn.measuring_ended && now >= cn.measure_until) {
    cn.measuring_ended = 1;
    cn.cpu1 = cpu_ms();
    cn.window1 = wall_ms();
  }
  if (cn.open_slots > 0 || !cn.measuring_ended) return;
  reply_begin(op.seq);
  buf_printf(&reply, ",\"connects\":%ld,\"measuredMs\":%.3f,\"window\":[%.3f,%.3f],\"cpuMs\":%.3f,\"latency\":", cn.connects, cn.measure_until - cn.measure_from, cn.window0, cn.window1, cn.cpu1 - cn.cpu0);
  hist_json(&reply);
  buf_printf(&reply, ",\"failures\":");
  counts_json(&reply, &op.counts);
  reply_end();
  free(cn.turn);
  memset(&cn, 0, sizeof cn);
  op_done();
}

static void connects_event(conn_t *c, enum event ev) {
  if (ev == EV_DOWN) return;
  if (ev == EV_UP) {
    double t1 = mono_ms();
    if (t1 >= cn.measure_from && t1 < cn.measure_until) {
      cn.connects++;
      hist_record(t1 - c->started);
    }
  } else {
    counts_add(&op.counts, c->outcome);
  }
  int slot = c->slot;
  conn_detach(c);
  conn_disconnect(c);
  connects_start_slot(slot);
}

static void do_connects(const request_t *r, toy_t **list, int n) {
  op.kind = OP_CONNECTS;
  op.seq = r->seq;
  op.list = list;
  op.n = n;
  memset(hist, 0, sizeof hist);
  double now = mono_ms();
  cn.slots = (int)num(r, "inFlight");
  if (cn.slots > n) cn.slots = n;
  if (cn.slots < 1) cn.slots = 1;
  cn.turn = calloc((size_t)cn.slots, sizeof *cn.turn);
  cn.measure_from = now + num(r, "warmupMs");
  cn.measure_until = cn.measure_from + num(r, "measureMs");
  cn.open_slots = cn.slots;
  for (int s = 0; s < cn.slots; s++) connects_start_slot(s);
}

/* -- echo: each toy subscribes to toys/<id>/echo and publishes 64-byte messages to it with up
 * to `window` in flight (QoS 1: not yet PUBACKed; QoS 0: not yet received back), refilled as
 * they return; at QoS 1 every acknowledged message must come back exactly once */

typedef struct echo {
  conn_t *c;
  uint8_t publish[300]; /* the PUBLISH packet, patched per message */
  size_t publish_len, payload_at;
  long inflight, credit, acked, unique, duplicates, stalled;
  uint32_t seq;
  double last_progress;
  uint8_t *seen;
  size_t seen_cap;
  uint8_t unacked[65536];
  int subscribed;
} echo_t;

static struct {
  echo_t *toys;
  int n, qos, window, subscribed;
  double warmup_ms, measure_ms, drain_ms;
  int sending, measuring, phase; /* phase: 0 warm-up, 1 measuring, 2 draining, 3 closing */
  long received;
  double phase_until, t0, measured_ms, window0, window1, cpu0, cpu_used, next_stall_check;
  int prepared;
} ec;

static void echo_free(void) {
  for (int i = 0; i < ec.n; i++) {
    if (ec.toys[i].c) {
      conn_detach(ec.toys[i].c);
      conn_disconnect(ec.toys[i].c);
    }
    free(ec.toys[i].seen);
  }
  free(ec.toys);
  memset(&ec, 0, sizeof ec);
}

static void echo_prepare_failed(const char *why) {
  reply_error(op.seq, why);
  echo_free();
  op_done();
}

static void echo_event(conn_t *c, enum event ev) {
  echo_t *e = c->echo;
  if (ev == EV_UP && e) {
    char topic[200];
    snprintf(topic, sizeof topic, "toys/%s/echo", c->toy->id);
    send_subscribe(c, topic, ec.qos);
    mark_dirty(c);
    return;
  }
  if (e) e->c = NULL;
  conn_detach(c);
  if (op.kind == OP_ECHO_PREPARE) echo_prepare_failed(ev == EV_REFUSED ? c->outcome : "closed while subscribing");
}

static void echo_suback(conn_t *c, uint8_t *p, size_t len) {
  echo_t *e = c->echo;
  if (!e || e->subscribed || op.kind != OP_ECHO_PREPARE) return;
  if (len < 3 || p[2] >= 0x80) {
    char why[200];
    snprintf(why, sizeof why, "subscription to toys/%s/echo refused", c->toy->id);
    echo_prepare_failed(why);
    return;
  }
  e->subscribed = 1;
  if (++ec.subscribed == ec.n) {
    ec.prepared = 1;
    reply_begin(op.seq);
    reply_end();
    op_done();
  }
}

static void echo_delivered(conn_t *c, uint8_t header, uint8_t *p, size_t len) {
  echo_t *e = c->echo;
  int qos = (header >> 1) & 3;
  if (len < 2) return;
  size_t at = 2 + ((size_t)p[0] << 8 | p[1]);
  uint16_t packet_id = 0;
  if (qos > 0 && at + 2 <= len) {
    packet_id = (uint16_t)(p[at] << 8 | p[at + 1]);
    at += 2;
  }
  if (qos > 0) {
    send_puback(c, packet_id);
    mark_dirty(c);
  }
  if (!e || len < at || len - at != PAYLOAD_BYTES) return;
  double sent_at;
  uint32_t seq;
  memcpy(&sent_at, p + at, 8); /* little-endian hosts (x86-64, arm64) */
  memcpy(&seq, p + at + 8, 4);
  double now = mono_ms();
  e->last_progress = now;
  if (seq >= e->seen_cap) {
    size_t cap = e->seen_cap ? e->seen_cap : 4096;
    while (cap <= seq) cap *= 2;
    e->seen = xrealloc(e->seen, cap);
    memset(e->seen + e->seen_cap, 0, cap - e->seen_cap);
    e->seen_cap = cap;
  }
  if (e->seen[seq]) {
    e->duplicates++;
    return;
  }
  e->seen[seq] = 1;
  e->unique++;
  if (ec.measuring) {
    ec.received++;
    hist_record(now - sent_at);
  }
  /* a message of a window given up as stalled no longer holds a place in it */
  if (ec.qos == 0 && e->inflight > 0) {
    e->inflight--;
    e->credit++;
  }
  mark_dirty(c);
}

static void echo_acked(conn_t *c, uint8_t *p, size_t len) {
  echo_t *e = c->echo;
  if (!e || len < 2) return;
  uint16_t id = (uint16_t)(p[0] << 8 | p[1]);
  if (e->unacked[id] != 1) return;
  e->unacked[id] = 0;
  e->acked++;
  e->inflight--;
  e->credit++;
  e->last_progress = mono_ms();
  mark_dirty(c);
}

/* before the connection writes this turn: as many new publishes as the window allows */
static void echo_fill(conn_t *c) {
  echo_t *e = c->echo;
  if (!e || c->st != C_OPEN) return;
  long room = ec.window - e->inflight;
  long count = ec.sending ? (e->credit < room ? e->credit : room) : 0;
  e->credit = 0;
  if (count <= 0) return;
  buf_reserve(&c->out, (size_t)count * e->publish_len);
  double now = mono_ms();
  for (long i = 0; i < count; i++) {
    uint32_t seq = e->seq++;
    uint16_t packet_id = (uint16_t)(seq % 65535 + 1);
    uint8_t *m = c->out.b + c->out.len;
    memcpy(m, e->publish, e->publish_len);
    if (ec.qos == 1) {
      e->unacked[packet_id] = 1;
      m[e->payload_at - 2] = (uint8_t)(packet_id >> 8);
      m[e->payload_at - 1] = (uint8_t)packet_id;
    }
    memcpy(m + e->payload_at, &now, 8);
    memcpy(m + e->payload_at + 8, &seq, 4);
    c->out.len += e->publish_len;
  }
  e->inflight += count;
}

static void do_echo_prepare(const request_t *r, toy_t **list, int n) {
  if (ec.toys) echo_free();
  op.kind = OP_ECHO_PREPARE;
  op.seq = r->seq;
  ec.n = n;
  ec.qos = (int)num(r, "qos");
  ec.window = (int)num(r, "window");
  ec.warmup_ms = num(r, "warmupMs");
  ec.measure_ms = num(r, "measureMs");
  ec.drain_ms = num(r, "drainMs");
  ec.toys = calloc((size_t)n, sizeof *ec.toys);
  for (int i = 0; i < n; i++) {
    echo_t *e = &ec.toys[i];
    char topic[200];
    int tl = snprintf(topic, sizeof topic, "toys/%s/echo", list[i]->id);
    uint8_t body[300];
    size_t bn = put_string(body, topic);
    if (ec.qos == 1) body[bn++] = 0, body[bn++] = 1; /* packet id, patched per message */
    e->payload_at = bn;
    memset(body + bn, 0, PAYLOAD_BYTES);
    bn += PAYLOAD_BYTES;
    buf_t b = {0};
    put_packet(&b, ec.qos == 1 ? 0x32 : 0x30, body, bn);
    memcpy(e->publish, b.b, b.len);
    e->payload_at += b.len - bn; /* past the fixed header */
    e->publish_len = b.len;
    buf_free(&b);
    (void)tl;
  }
  for (int i = 0; i < n; i++) {
    conn_t *c = conn_open(list[i], R_ECHO, i);
    c->echo = &ec.toys[i];
    ec.toys[i].c = c;
  }
  free(list);
}

static void echo_reply(void) {
  long sent = 0, acked = 0, unique = 0, dups = 0, stalled = 0;
  for (int i = 0; i < ec.n; i++) {
    sent += ec.toys[i].seq;
    acked += ec.toys[i].acked;
    unique += ec.toys[i].unique;
    dups += ec.toys[i].duplicates;
    stalled += ec.toys[i].stalled;
  }
  long lost = (ec.qos == 1 ? acked : sent) - unique;
  reply_begin(op.seq);
  buf_printf(&reply, ",\"toys\":%d,\"received\":%ld,\"measuredMs\":%.3f,\"window\":[%.3f,%.3f],\"cpuMs\":%.3f,\"latency\":", ec.n, ec.received, ec.measured_ms, ec.window0, ec.window1, ec.cpu_used);
  hist_json(&reply);
  buf_printf(&reply, ",\"sent\":%ld,\"acked\":%ld,\"uniqueReceived\":%ld,\"duplicates\":%ld,\"lost\":%ld,\"stalled\":%ld", sent, acked, unique, dups, lost > 0 ? lost : 0, stalled);
  reply_end();
}

static int echo_settled(void) {
  for (int i = 0; i < ec.n; i++) {
    echo_t *e = &ec.toys[i];
    if (e->inflight != 0) return 0;
    if (ec.qos == 1 && e->unique < e->acked) return 0;
  }
  return 1;
}

static void echo_tick(void) {
  double now = mono_ms();
  if (ec.phase <= 2 && now >= ec.next_stall_check) {
    /* a window without progress for STALL_MS is given up, so that a dropped message cannot
     * stop the toy for the rest of the run */
    ec.next_stall_check = now + 250;
    for (int i = 0; i < ec.n; i++) {
      echo_t *e = &ec.toys[i];
      if (e->inflight == 0 || now - e->last_progress < STALL_MS) continue;
      e->stalled += e->inflight;
      e->inflight = 0;
      memset(e->unacked, 0, sizeof e->unacked);
      e->credit = ec.window;
      e->last_progress = now;
      if (e->c) mark_dirty(e->c);
    }
  }
  if (ec.phase == 0 && now >= ec.phase_until) {
    ec.phase = 1;
    ec.cpu0 = cpu_ms();
    ec.t0 = now;
    ec.window0 = wall_ms();
    ec.measuring = 1;
    ec.phase_until = now + ec.measure_ms;
  } else if (ec.phase == 1 && now >= ec.phase_until) {
    ec.measuring = 0;
    ec.measured_ms = now - ec.t0;
    ec.window1 = wall_ms();
    ec.cpu_used = cpu_ms() - ec.cpu0;
    ec.sending = 0;
    ec.phase = 2;
    ec.phase_until = now + ec.drain_ms;
  } else if (ec.phase == 2 && (echo_settled() || now >= ec.phase_until)) {
    ec.phase = 3;
    for (int i = 0; i < ec.n; i++)
      if (ec.toys[i].c) conn_disconnect(ec.toys[i].c);
    ec.phase_until = now + 5000;
  } else if (ec.phase == 3) {
    int open = 0;
    for (int i = 0; i < ec.n; i++) open += ec.toys[i].c != NULL && ec.toys[i].c->st != C_DEAD;
    if (open == 0 || now >= ec.phase_until) {
      echo_reply();
      echo_free();
      op_done();
    }
  }
}

static void do_echo_measure(const request_t *r) {
  if (!ec.prepared) {
    reply_error(r->seq, "no echo load prepared");
    return;
  }
  op.kind = OP_ECHO_MEASURE;
  op.seq = r->seq;
  memset(hist, 0, sizeof hist);
  double now = mono_ms();
  ec.sending = 1;
  ec.phase = 0;
  ec.phase_until = now + ec.warmup_ms;
  ec.next_stall_check = now + 250;
  for (int i = 0; i < ec.n; i++) {
    echo_t *e = &ec.toys[i];
    e->credit = ec.window;
    e->last_progress = now;
    if (e->c) mark_dirty(e->c);
  }
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static void on_conn(conn_t *c, enum event ev) {
  switch (c->role) {
    case R_HOLD: hold_event(c, ev); break;
    case R_CONNECTS: connects_event(c, ev); break;
    case R_ECHO: echo_event(c, ev); break;
    case R_TRY: try_event(c, ev); break;
    case R_DETACHED: break;
  }
}

static void on_packet(conn_t *c, uint8_t header, uint8_t *body, size_t len) {
  switch (header >> 4) {
    case 2: /* CONNACK */
      if (c->st != C_MQTT) return;
      if (len >= 2 && body[1] == 0) {
        c->st = C_OPEN;
        on_conn(c, EV_UP);
      } else {
        snprintf(c->error, sizeof c->error, "CONNACK %d", len >= 2 ? body[1] : -1);
        snprintf(c->outcome, sizeof c->outcome, "refused (CONNACK %d)", len >= 2 ? body[1] : -1);
        on_conn(c, EV_REFUSED); /* the owner detaches it */
        if (c->st != C_DEAD) conn_kill(c, "");
      }
      return;
    case 3: echo_delivered(c, header, body, len); return;
    case 4: echo_acked(c, body, len); return;
    case 9: echo_suback(c, body, len); return;
    default: return; /* PINGRESP and anything else */
  }
}

static void percent_decode(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (*p == '%' && p[1] && p[2]) {
      char hex[3] = {p[1], p[2], 0};
      *o++ = (char)strtol(hex, NULL, 16);
      p += 2;
    } else {
      *o++ = *p;
    }
  }
  *o = 0;
}

static void handle_request(char *line) {
  request_t r = {0};
  char *save = NULL, *tok = strtok_r(line, " ", &save);
  if (!tok) return;
  r.seq = atol(tok);
  tok = strtok_r(NULL, " ", &save);
  if (!tok) return;
  snprintf(r.op, sizeof r.op, "%s", tok);
  while ((tok = strtok_r(NULL, " ", &save)) && r.n < 16) {
    char *eq = strchr(tok, '=');
    if (!eq) continue;
    *eq = 0;
    percent_decode(eq + 1);
    r.names[r.n] = tok;
    r.values[r.n++] = eq + 1;
  }
  char err[256] = "";
  if (strcmp(r.op, "init") == 0) do_init(&r);
  else if (strcmp(r.op, "target") == 0) {
    target_port = (int)num(&r, "port");
    reply_begin(r.seq);
    reply_end();
  } else if (strcmp(r.op, "hold") == 0) {
    toy_t **list = toy_list(param(&r, "ids"), &op.n, err, sizeof err);
    if (!list) return reply_error(r.seq, err);
    op.kind = OP_HOLD;
    op.seq = r.seq;
    op.list = list;
    op.concurrency = (int)num(&r, "concurrency");
    if (op.concurrency < 1) op.concurrency = 1;
    op.cpu0 = cpu_ms();
    op.t0 = mono_ms();
    hold_next();
  } else if (strcmp(r.op, "release") == 0) do_release(&r);
  else if (strcmp(r.op, "watch") == 0) {
    toy_t *t = find_toy(param(&r, "id") ? param(&r, "id") : "");
    if (!t) return reply_error(r.seq, "unknown toy");
    op.kind = OP_WATCH;
    op.seq = r.seq;
    op.toy = t;
    op.deadline = mono_ms() + num(&r, "timeoutMs");
    watch_tick();
  } else if (strcmp(r.op, "isOpen") == 0) {
    toy_t *t = find_toy(param(&r, "id") ? param(&r, "id") : "");
    reply_begin(r.seq);
    buf_printf(&reply, ",\"open\":%s", t && t->held && t->held->st == C_OPEN ? "true" : "false");
    reply_end();
  } else if (strcmp(r.op, "tryConnect") == 0) {
    toy_t *t = find_toy(param(&r, "id") ? param(&r, "id") : "");
    if (!t) return reply_error(r.seq, "unknown toy");
    op.kind = OP_TRY;
    op.seq = r.seq;
    conn_open(t, R_TRY, 0);
  } else if (strcmp(r.op, "connects") == 0) {
    int n = 0;
    toy_t **list = toy_list(param(&r, "ids"), &n, err, sizeof err);
    if (!list || n == 0) return reply_error(r.seq, list ? "no toys" : err);
    do_connects(&r, list, n);
  } else if (strcmp(r.op, "echoPrepare") == 0) {
    int n = 0;
    toy_t **list = toy_list(param(&r, "ids"), &n, err, sizeof err);
    if (!list || n == 0) return reply_error(r.seq, list ? "no toys" : err);
    do_echo_prepare(&r, list, n);
  } else if (strcmp(r.op, "echoMeasure") == 0) do_echo_measure(&r);
  else {
    snprintf(err, sizeof err, "unknown op %s", r.op);
    reply_error(r.seq, err);
  }
}

/* ---- stdin: request lines, queued and taken one at a time ------------------------------------ */

static buf_t input;
static int stdin_marker;

static void read_stdin(void) {
  buf_reserve(&input, 65536);
  ssize_t n = read(0, input.b + input.len, input.cap - input.len);
  if (n == 0) exit(0); /* the driver is gone */
  if (n > 0) input.len += (size_t)n;
}

/* the next complete line, if no request is in progress */
static void take_requests(void) {
  while (op.kind == OP_NONE) {
    if (input.off >= input.len) return;
    char *start = (char *)input.b + input.off;
    char *nl = memchr(start, '\n', input.len - input.off);
    if (!nl) return;
    *nl = 0;
    input.off = (size_t)(nl + 1 - (char *)input.b);
    handle_request(start);
  }
}

static void tick(void) {
  double now = mono_ms();
  switch (op.kind) {
    case OP_RELEASE: release_tick(); break;
    case OP_WATCH: watch_tick(); break;
    case OP_CONNECTS: connects_tick(); break;
    case OP_ECHO_MEASURE: echo_tick(); break;
    default: break;
  }
  /* handshakes that never finish, closings the peer never answers, idle sessions' PINGREQ */
  static double next_scan;
  if (now < next_scan) return;
  next_scan = now + 250;
  for (conn_t *c = live, *next; c; c = next) {
    next = c->next_live;
    if (c->st < C_OPEN && now - c->started > HANDSHAKE_TIMEOUT_MS) conn_kill(c, "timeout");
    else if (c->st == C_CLOSING && now - c->started > CLOSING_TIMEOUT_MS) conn_kill(c, "");
    else if (c->st == C_OPEN && now - c->last_write > KEEPALIVE_S * 500.0) {
      static const uint8_t ping[2] = {0xc0, 0};
      buf_put(&c->out, ping, 2);
      mark_dirty(c);
    }
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  struct rlimit files; /* thousands of sockets: the soft limit up to the hard one, as Node does */
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = &stdin_marker};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e) < 0) die("cannot poll stdin");
  struct epoll_event events[512];
  reply_begin(-1); /* ready */
  buf_printf(&reply, ",\"ready\":true");
  reply_end();
  for (;;) {
    int n = epoll_wait(ep, events, 512, 5);
    if (n < 0 && errno != EINTR) die("epoll_wait failed");
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == &stdin_marker) read_stdin();
      else conn_event(events[i].data.ptr, events[i].events);
    }
    /* connects that failed at once, reported now (a connect loop never recurses) */
    conn_t *fails = failed;
    failed = NULL;
    while (fails) {
      conn_t *c = fails;
      fails = c->next_failed;
      c->in_failed = 0;
      if (c->free_after_fail) free(c); /* detached and dead before it was reported */
      else conn_kill(c, errno_code(c->failed_errno));
    }
    take_requests();
    tick();
    /* one write per connection per turn: its PUBACKs and new publishes together */
    while (dirty) {
      conn_t *c = dirty;
      dirty = c->next_dirty;
      c->dirty = 0;
      if (c->st == C_DEAD) continue;
      echo_fill(c);
      conn_flush(c);
    }
    while (graveyard) {
      conn_t *c = graveyard;
      graveyard = c->next_dead;
      if (c->in_failed) c->free_after_fail = 1;
      else free(c);
    }
  }
}
