/*
 * A compiled open-loop load generator for loopback echo servers (bench/open-loop.ts --generator c; built with
 * gcc at run time by bench/c-open-loop.ts, never committed as a binary).
 *
 * One thread, raw level-triggered epoll. Message k (0, 1, 2, ...) is due at t0 + k/rate on connection k mod N,
 * where t0 is the moment every connection is up; it is sent when due whatever the server does (a connection
 * may have many messages in flight), and its latency counts from that intended time to the moment its last
 * echoed byte arrived, so a late send or a stalled server counts for every message it delays (no
 * coordinated omission). Every echoed byte is compared with what was sent. Latencies go into a log-linear
 * histogram (HdrHistogram's layout: 1,024 linear sub-buckets per power of two, under 0.1% error).
 *
 * The run is bounded: rate x (warmup + duration) messages at most (--max-messages), then at most --drain
 * for the last echoes, and an alarm ends a run that overstays all of that. Loopback addresses only.
 * Prints one JSON line on stdout; exit 0 on a clean run, 1 if any error occurred, 2 on bad options.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "open-loop-gen-histogram.h"

#define MAX_PENDING_CONNECTS 256

typedef struct {
  int fd, index, dead, want_out;
  uint64_t scheduled; /* messages due on this connection so far */
  uint64_t sent;      /* bytes the kernel took */
  uint64_t received;  /* bytes echoed and verified */
} conn;

enum { E_CONNECT, E_CLOSED, E_RESET, E_CORRUPT, E_UNEXPECTED, E_WRITE, E_KINDS };
static const char *error_names[E_KINDS] = {"connect", "closed", "reset", "corrupt", "unexpected", "write"};

static struct {
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int connections, size, server_pid;
  double rate, warmup, duration, drain, connect_timeout, tick;
  uint64_t max_messages;
} opt = {.connections = 1000, .size = 64, .rate = 40000, .warmup = 2, .duration = 10, .drain = 2,
         .connect_timeout = 10, .max_messages = 10000000};

static histogram latency, lag;
static conn *conns;
static int ep;
static int64_t t0;
static uint64_t first_measured, total_messages, errors[E_KINDS];
static uint8_t inbuf[65536], outbuf[65536];

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Byte `offset` of connection `index`'s stream: differs from message to message, so a lost, repeated or
 * reordered message shows up as well as a changed byte. */
static uint8_t expected(int index, uint64_t offset) {
  return (uint8_t)((offset % (uint64_t)opt.size) * 7 + (offset / (uint64_t)opt.size) * 13 + (uint64_t)index * 31);
}

/* Message `seq` of a connection is message k = seq * N + index of the whole schedule. */
static uint64_t global_index(const conn *c, uint64_t seq) {
  return seq * (uint64_t)opt.connections + (uint64_t)c->index;
}

static int64_t intended(uint64_t k) {
  return t0 + (int64_t)((double)k * 1e9 / opt.rate);
}

static uint64_t next_k;        /* the next message of the schedule to send */
static int64_t last_round, tick; /* --tick: when due messages last left, and how often they may */

static int measured(uint64_t k) {
  return k >= first_measured && k < total_messages;
}

static void fail(conn *c, int kind) {
  errors[kind]++;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->dead = 1;
}

static void watch_writable(conn *c, int on) {
  if (c->want_out == on) return;
  c->want_out = on;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Hands the kernel every byte due on `c`; a message's send lag is when its last byte was taken. */
static void flush(conn *c) {
  uint64_t want = c->scheduled * (uint64_t)opt.size;
  while (!c->dead && c->sent < want) {
    size_t n = want - c->sent > sizeof outbuf ? sizeof outbuf : (size_t)(want - c->sent);
    for (size_t i = 0; i < n; i++) outbuf[i] = expected(c->index, c->sent + i);
    ssize_t w = send(c->fd, outbuf, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      fail(c, errno == ECONNRESET || errno == EPIPE ? E_RESET : E_WRITE);
      return;
    }
    int64_t now = now_ns();
    for (uint64_t seq = c->sent / opt.size; seq < (c->sent + (uint64_t)w) / opt.size; seq++) {
      uint64_t k = global_index(c, seq);
      if (measured(k)) record(&lag, now - intended(k));
    }
    c->sent += (uint64_t)w;
    if ((size_t)w < n) break;
  }
  if (!c->dead) watch_writable(c, c->sent < want);
}

/* Every message due by `now` leaves now (with --tick, once a round), each on its own connection. */
static void send_due(int64_t now) {
  if (now < last_round + tick) return;
  uint64_t due = (uint64_t)floor((double)(now - t0) * opt.rate / 1e9) + 1;
  if (due > total_messages) due = total_messages;
  if (due > next_k) last_round = now;
  for (; next_k < due; next_k++) {
    conn *c = &conns[next_k % (uint64_t)opt.connections];
    c->scheduled++;
    if (!c->dead && !c->want_out) flush(c);
  }
}

static void on_readable(conn *c, int64_t now) {
  for (;;) {
    ssize_t r = recv(c->fd, inbuf, sizeof inbuf, 0);
    if (r == 0) return fail(c, E_CLOSED);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) fail(c, E_RESET);
      return;
    }
    if (c->received + (uint64_t)r > c->sent) return fail(c, E_UNEXPECTED);
    for (ssize_t i = 0; i < r; i++)
      if (inbuf[i] != expected(c->index, c->received + (uint64_t)i)) return fail(c, E_CORRUPT);
    for (uint64_t seq = c->received / opt.size; seq < (c->received + (uint64_t)r) / opt.size; seq++) {
      uint64_t k = global_index(c, seq);
      if (measured(k)) record(&latency, now - intended(k));
    }
    c->received += (uint64_t)r;
    if ((size_t)r < sizeof inbuf) return;
  }
}

static int parse_seconds(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0) return -1;
  if (strcmp(end, "ms") == 0) v /= 1000;
  else if (strcmp(end, "us") == 0) v /= 1e6;
  else if (*end != 0 && strcmp(end, "s") != 0) return -1;
  *out = v;
  return 0;
}

static int loopback(const char *host, int port) {
  struct sockaddr_in *v4 = (struct sockaddr_in *)&opt.addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&opt.addr;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    opt.addr_len = sizeof *v4;
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    opt.addr_len = sizeof *v6;
    return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
  }
  return 0;
}

static void usage(const char *why) {
  fprintf(stderr,
          "open-loop-gen: %s\nusage: open-loop-gen --port P [--host 127.0.0.1] [--connections 1000] [--rate 40000]\n"
          "  [--size 64] [--warmup 2s] [--duration 10s] [--drain 2s] [--connect-timeout 10s] [--server-pid PID]\n"
          "  [--tick 0] [--max-messages 10000000]\n",
          why);
  exit(2);
}

static void parse(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0;
  for (int i = 1; i < argc; i++) {
    const char *name = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage("every option takes a value");
    i++;
    if (!strcmp(name, "--host")) host = v;
    else if (!strcmp(name, "--port")) port = atoi(v);
    else if (!strcmp(name, "--connections")) opt.connections = atoi(v);
    else if (!strcmp(name, "--rate")) opt.rate = strtod(v, NULL);
    else if (!strcmp(name, "--size")) opt.size = atoi(v);
    else if (!strcmp(name, "--server-pid")) opt.server_pid = atoi(v);
    else if (!strcmp(name, "--max-messages")) opt.max_messages = strtoull(v, NULL, 10);
    else if (!strcmp(name, "--warmup") ? parse_seconds(v, &opt.warmup)
             : !strcmp(name, "--duration") ? parse_seconds(v, &opt.duration)
             : !strcmp(name, "--drain") ? parse_seconds(v, &opt.drain)
             : !strcmp(name, "--tick") ? parse_seconds(v, &opt.tick)
             : !strcmp(name, "--connect-timeout") ? parse_seconds(v, &opt.connect_timeout)
             : (usage("unknown option"), 0))
      usage("a duration is a number of seconds, or with an s, ms or us suffix");
  }
  if (port < 1 || port > 65535) usage("--port must be 1-65535");
  if (!loopback(host, port)) usage("--host must be a loopback address (127.0.0.0/8 or ::1)");
  if (opt.connections < 1 || opt.connections > 100000) usage("--connections must be 1-100000");
  if (opt.size < 1 || opt.size > 65536) usage("--size must be 1-65536 bytes");
  if (!(opt.rate > 0) || opt.rate > 10e6) usage("--rate must be above 0 and at most 10,000,000 messages/s");
  if (!(opt.duration > 0) || opt.duration + opt.warmup > 600) usage("--duration must be above 0, warmup + duration <= 600 s");
  if (ceil(opt.rate * (opt.warmup + opt.duration)) > (double)opt.max_messages)
    usage("rate x (warmup + duration) exceeds --max-messages");
}

static void overstayed(int sig) {
  (void)sig;
  static const char msg[] = "open-loop-gen: the run overstayed its bound; stopping\n";
  if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
  _exit(3);
}

/* Opens every connection, MAX_PENDING_CONNECTS at a time; returns 0 once all are up, -1 on a failure. */
static int connect_all(void) {
  int64_t deadline = now_ns() + (int64_t)(opt.connect_timeout * 1e9);
  int next = 0, pending = 0, up = 0;
  struct epoll_event events[256];
  while (up < opt.connections) {
    while (next < opt.connections && pending < MAX_PENDING_CONNECTS) {
      conn *c = &conns[next];
      c->index = next++;
      c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c->fd < 0) return fail(c, E_CONNECT), -1;
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(c->fd, (struct sockaddr *)&opt.addr, opt.addr_len) < 0 && errno != EINPROGRESS)
        return fail(c, E_CONNECT), -1;
      struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
      pending++;
    }
    int64_t left = deadline - now_ns();
    if (left <= 0) return errors[E_CONNECT] += (uint64_t)(opt.connections - up), -1;
    int n = epoll_wait(ep, events, 256, (int)(left / 1000000) + 1);
    for (int i = 0; i < n; i++) {
      conn *c = events[i].data.ptr;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(c, E_CONNECT), -1;
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
      epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
      pending--;
      up++;
    }
  }
  return 0;
}

/* CPU time so far, ns: of `pid` from /proc (0: this process), or of the whole machine (busy, all cores) if -1. */
static int64_t cpu_ns(int pid) {
  char path[64], buf[1024];
  long ticks = sysconf(_SC_CLK_TCK);
  if (pid < 0) snprintf(path, sizeof path, "/proc/stat");
  else if (pid == 0) snprintf(path, sizeof path, "/proc/self/stat");
  else snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  unsigned long long a[10] = {0};
  if (pid < 0) {
    /* cpu  user nice system idle iowait irq softirq steal */
    if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6],
               &a[7]) < 8)
      return -1;
    return (int64_t)(a[0] + a[1] + a[2] + a[5] + a[6] + a[7]) * 1000000000 / ticks;
  }
  char *p = strrchr(buf, ')');
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &a[0], &a[1]) < 2) return -1;
  return (int64_t)(a[0] + a[1]) * 1000000000 / ticks;
}

/* How long this process's main thread has waited runnable on a run queue, ns (/proc/self/schedstat). */
static int64_t wait_ns(void) {
  unsigned long long run = 0, wait = 0;
  FILE *f = fopen("/proc/self/schedstat", "r");
  if (!f) return -1;
  int ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
  fclose(f);
  return ok ? (int64_t)wait : -1;
}

typedef struct {
  int64_t at, self, server, machine, wait;
} sample;

static sample take_sample(void) {
  return (sample){now_ns(), cpu_ns(0), opt.server_pid ? cpu_ns(opt.server_pid) : -1, cpu_ns(-1), wait_ns()};
}

static double pct(int64_t a, int64_t b, int64_t span) {
  return a < 0 || b < 0 || span <= 0 ? -1 : 100.0 * (double)(b - a) / (double)span;
}

int main(int argc, char **argv) {
  parse(argc, argv);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  /* Wake-ups within a microsecond of a message's due time, not the default 50 µs timer slack. */
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  signal(SIGALRM, overstayed);
  alarm((unsigned)ceil(opt.connect_timeout + opt.warmup + opt.duration + opt.drain) + 10);
  conns = calloc((size_t)opt.connections, sizeof *conns);
  ep = epoll_create1(EPOLL_CLOEXEC);
  int ok = conns && ep >= 0 && connect_all() == 0;

  struct epoll_event events[1024];
  sample start = {0}, end = {0};
  int started = 0, ended = 0;
  int64_t drain_until = 0;
  tick = (int64_t)(opt.tick * 1e9);
  if (ok) {
    t0 = now_ns();
    first_measured = (uint64_t)ceil(opt.warmup * opt.rate);
    total_messages = (uint64_t)ceil((opt.warmup + opt.duration) * opt.rate);
    int64_t window_start = intended(first_measured), window_end = t0 + (int64_t)((opt.warmup + opt.duration) * 1e9);
    for (;;) {
      int64_t now = now_ns();
      if (!started && now >= window_start) start = take_sample(), started = 1;
      if (!ended && now >= window_end) end = take_sample(), ended = 1, drain_until = now + (int64_t)(opt.drain * 1e9);
      send_due(now);
      struct timespec timeout = {0, 0};
      if (next_k < total_messages) {
        int64_t at = intended(next_k) > last_round + tick ? intended(next_k) : last_round + tick;
        int64_t wait = at - now_ns();
        if (wait > 0) timeout = (struct timespec){wait / 1000000000, wait % 1000000000};
      } else {
        int done = 1;
        for (int i = 0; i < opt.connections && done; i++)
          done = conns[i].dead || conns[i].received == conns[i].scheduled * (uint64_t)opt.size;
        if (ended && (done || now >= drain_until)) break;
        int64_t wait = (ended ? drain_until : window_end) - now;
        timeout = (struct timespec){0, wait > 1000000 ? 1000000 : (wait > 0 ? wait : 0)};
      }
      int n = epoll_pwait2(ep, events, 1024, &timeout, NULL);
      now = now_ns();
      for (int i = 0; i < n; i++) {
        /* A burst of echoes (after a server's stall) must not hold back the messages falling due meanwhile. */
        if (i % 64 == 63) send_due(now_ns());
        conn *c = events[i].data.ptr;
        if (c->dead) continue;
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, now);
        if (!c->dead && (events[i].events & EPOLLOUT)) flush(c);
      }
    }
  }

  /* What is still unanswered counts with its latency so far (a lower bound); a dead connection's is lost. */
  int64_t now = now_ns();
  uint64_t outstanding = 0, lost = 0, total_errors = 0;
  for (int i = 0; ok && i < opt.connections; i++) {
    conn *c = &conns[i];
    for (uint64_t seq = c->received / opt.size; seq < c->scheduled; seq++) {
      uint64_t k = global_index(c, seq);
      if (!measured(k)) continue;
      if (c->dead) lost++;
      else outstanding++, record(&latency, now - intended(k));
    }
  }
  for (int i = 0; i < E_KINDS; i++) total_errors += errors[i];
  int64_t span = end.at - start.at;
  double echoed = (double)(latency.total - outstanding);
  printf("{\"generator\":\"c\",\"connections\":%d,\"rate\":%.0f,\"size\":%d,\"warmup_s\":%g,\"duration_s\":%g,\"tick_us\":%g,",
         opt.connections, opt.rate, opt.size, opt.warmup, opt.duration, opt.tick * 1e6);
  printf("\"scheduled\":%llu,\"msgs\":%.0f,\"msgs_per_s\":%.1f,\"outstanding\":%llu,\"lost\":%llu,\"errors\":%llu,",
         ok ? (unsigned long long)(total_messages - first_measured) : 0ULL, echoed, ok ? echoed / opt.duration : 0,
         (unsigned long long)outstanding, (unsigned long long)lost, (unsigned long long)total_errors);
  printf("\"error_kinds\":{");
  for (int i = 0; i < E_KINDS; i++) printf("%s\"%s\":%llu", i ? "," : "", error_names[i], (unsigned long long)errors[i]);
  printf("},");
  print_summary("latency_us", &latency);
  printf(",");
  print_summary("send_lag_us", &lag);
  double server = pct(start.server, end.server, span);
  printf(",\"generator_cpu_pct\":%.1f,\"generator_wait_ms\":%.2f,\"server_cpu_pct\":%.1f,\"machine_cpu_pct\":%.1f,"
         "\"server_cpu_us_per_msg\":%.2f}\n",
         pct(start.self, end.self, span), start.wait < 0 ? -1 : (double)(end.wait - start.wait) / 1e6, server,
         pct(start.machine, end.machine, span),
         server < 0 || echoed == 0 ? -1 : (double)(end.server - start.server) / 1000.0 / echoed);
  return total_errors ? 1 : 0;
}
