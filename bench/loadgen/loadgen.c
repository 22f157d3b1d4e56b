/*
 * loadgen: single-threaded epoll WebSocket load generator for the dieselengine benchmarks.
 *
 * Why C and one thread: the generator must cost far less CPU per delivery than the fastest
 * server under test (Bun), so it is pinned to its own core and reports its own CPU time; a step
 * where it used most of its core is flagged by the harness instead of trusted.
 *
 * Modes (--mode):
 *   fanout  connect --conns clients to --path; --senders of them send; then obey stdin commands
 *           "run RATE SECONDS" (RATE = messages/s offered in total) and "quit". Each run prints one
 *           JSON line: sent, expected deliveries, received, lost, p50/p99, deliveries/s, CPU.
 *           --slow-frac F: that fraction of the non-senders stop reading once connected (small
 *           SO_RCVBUF so the server feels the backpressure within seconds).
 *   echo    --conns clients in a closed loop on --path for --duration seconds after --warmup.
 *   idle    open --conns connections (--conc handshakes in flight), print a JSON line, then hold
 *           them (answering pings) until "quit" on stdin.
 *   churn   --cycles connect / handshake / close cycles, --conc at a time.
 * --proto sio speaks Engine.IO v4 + Socket.IO over the websocket transport instead of raw frames.
 * --port takes one port or a comma-separated list of up to 16 (cross-node runs, bench/cluster): client i
 * connects to port i % count, so one generator (one clock, one delivery count) drives clients split
 * across nodes; senders are clients 0..K-1, so they alternate between the ports too.
 *
 * Message payload (--size bytes, default 64, ASCII): "#M" sender(5) step(4) seq(10) monotonic-ns(20) then 'x'.
 * Sender and receiver share CLOCK_MONOTONIC (one process), so latency = receive - send time.
 * --json 1: the payload is instead a chat message as JSON ({"type":"message","from":...,"text":"#M... words",
 * "timestamp":...}, about --size bytes, words drawn from a list: compresses as chat does, not as 'x' runs).
 * --tls 1: wss (OpenSSL, no certificate check). --deflate 1: offer permessage-deflate as Chrome does
 * ("permessage-deflate; client_max_window_bits"); messages are sent uncompressed (allowed), compressed
 * ones received are inflated on every tenth client (latency, ordering) and counted by their frame on the
 * others, so inflating does not make the generator the bottleneck. Each step reports rx_bytes: bytes
 * received off the socket (ciphertext with --tls), for bytes on the wire per delivery.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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
#include <openssl/ssl.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { M_FANOUT, M_ECHO, M_IDLE, M_CHURN };
enum { S_FREE, S_CONNECTING, S_HANDSHAKE, S_SIO_OPEN, S_SIO_CONNECT, S_OPEN, S_CLOSING, S_TLS };
enum { R_SENDER = 1, R_SLOW = 2 };

#define MAX_OUT (4u << 20)

typedef struct conn {
    int fd, idx, state, role;
    uint32_t events;
    uint8_t *in;
    size_t inlen, incap;
    uint8_t *out;
    size_t outlen, outcap;
    uint64_t seq, step_sent, deadline;
    SSL *ssl;
    z_stream *inflater;      /* --deflate with context takeover by the server: one per sampled client */
    int deflate, takeover;   /* negotiated; the server keeps its context between messages */
} conn;

/* ---- options ---- */
static int mode = M_FANOUT, proto_sio = 0, nconns = 200, nsenders = 10, conc = 200, nsrcs = 16;
static int ports[16] = {8080}, nports = 1, cycles = 10000, payload = 64;
static double slow_frac = 0.0, duration = 5.0, warmup = 1.0, hs_timeout = 10.0;
static const char *host = "127.0.0.1", *path = "/ws/chat", *query = "";
static int use_tls, use_deflate, json_payload;
static SSL_CTX *tls_ctx;

/* ---- state ---- */
static int epfd;
static conn *conns;
static int nslots;
static uint64_t t_start;
static long established, failed, started, dropped, slow_closed, closed_by_server, cycles_done;
static uint64_t first_connect_ns, last_established_ns;
static int readers;            /* connected clients that read */
static int cur_step = 0;       /* 0 = not measuring */
static int measuring = 0;      /* echo: inside the measured window */
static uint64_t step_received, step_late, step_sent, step_expected, step_t0, step_t1, last_rx;
static double step_rate;
static uint32_t mask_state = 0x9e3779b9u;
static uint64_t n_recv, n_recv_bytes, n_polls;
static uint64_t rx_now; /* one clock read per recv() batch: the clock was 11% of the CPU per message */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *m) {
    perror(m);
    exit(2);
}

/* ---- latency histogram: 1 us buckets up to 100 ms, then 100 us buckets up to ~10 s ---- */
#define HB 199000
static uint32_t hist[HB];
static uint64_t hist_n, hist_max;

static void hist_reset(void) {
    memset(hist, 0, sizeof hist);
    hist_n = hist_max = 0;
}
static inline void hist_add(uint64_t ns) {
    uint64_t us = ns / 1000, b = us < 100000 ? us : 100000 + (us - 100000) / 100;
    if (b >= HB) b = HB - 1;
    hist[b]++;
    hist_n++;
    if (ns > hist_max) hist_max = ns;
}
static double hist_pct(double p) { /* milliseconds */
    if (!hist_n) return -1;
    uint64_t target = (uint64_t)(p * hist_n), acc = 0;
    if (target >= hist_n) target = hist_n - 1;
    for (int b = 0; b < HB; b++) {
        acc += hist[b];
        if (acc > target) return b < 100000 ? b / 1000.0 : (100000 + (b - 100000) * 100.0) / 1000.0;
    }
    return hist_max / 1e6;
}

/* ---- buffers and I/O ---- */
static void ensure(uint8_t **buf, size_t *cap, size_t need) {
    if (*cap >= need) return;
    size_t n = *cap ? *cap : 1024;
    while (n < need) n *= 2;
    *buf = realloc(*buf, n);
    if (!*buf) die("realloc");
    *cap = n;
}

static void set_events(conn *c, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl mod");
    c->events = ev;
}

static uint32_t base_events(conn *c) {
    if (c->state == S_CONNECTING) return EPOLLOUT;
    if ((c->role & R_SLOW) && c->state == S_OPEN) return EPOLLRDHUP;
    return EPOLLIN | EPOLLRDHUP;
}

static void conn_close(conn *c);

/* Write what is queued; keep the rest and ask for EPOLLOUT. Returns -1 if the conn died. */
static int conn_flush(conn *c) {
    size_t off = 0;
    while (off < c->outlen) {
        if (c->ssl) {
            if (c->state == S_TLS) break;
            int n = SSL_write(c->ssl, c->out + off, (int)(c->outlen - off));
            if (n > 0) { off += (size_t)n; continue; }
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
            ERR_clear_error();
            if (c->state == S_OPEN) dropped++;
            conn_close(c);
            return -1;
        }
        ssize_t n = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL);
        if (n > 0) { off += (size_t)n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        if (c->state == S_OPEN) dropped++;
        conn_close(c);
        return -1;
    }
    if (off) {
        memmove(c->out, c->out + off, c->outlen - off);
        c->outlen -= off;
    }
    set_events(c, base_events(c) | (c->outlen ? EPOLLOUT : 0));
    return 0;
}

/* Append one masked client frame (RFC 6455 5.3: client frames are always masked). */
static void queue_frame(conn *c, int opcode, const uint8_t *p, size_t len) {
    ensure(&c->out, &c->outcap, c->outlen + len + 14);
    uint8_t *h = c->out + c->outlen;
    size_t hl = 2;
    h[0] = 0x80 | (uint8_t)opcode;
    if (len < 126) h[1] = 0x80 | (uint8_t)len;
    else if (len < 65536) { h[1] = 0x80 | 126; h[2] = (uint8_t)(len >> 8); h[3] = (uint8_t)len; hl = 4; }
    else { h[1] = 0x80 | 127; for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i)); hl = 10; }
    mask_state ^= mask_state << 13; mask_state ^= mask_state >> 17; mask_state ^= mask_state << 5;
    uint8_t m[4] = {(uint8_t)mask_state, (uint8_t)(mask_state >> 8), (uint8_t)(mask_state >> 16), (uint8_t)(mask_state >> 24)};
    memcpy(h + hl, m, 4);
    hl += 4;
    for (size_t i = 0; i < len; i++) h[hl + i] = p[i] ^ m[i & 3];
    c->outlen += hl + len;
}

static void queue_text(conn *c, const char *s) { queue_frame(c, 1, (const uint8_t *)s, strlen(s)); }

static void put_digits(char *dst, uint64_t v, int width) {
    for (int i = width - 1; i >= 0; i--) { dst[i] = (char)('0' + v % 10); v /= 10; }
}

static const char *const WORDS[] = {
    "the", "meeting", "is", "moved", "to", "three", "o'clock", "tomorrow", "can", "you", "send", "me", "latest",
    "draft", "of", "report", "thanks", "see", "everyone", "there", "lunch", "anyone", "coffee", "deploy", "went",
    "fine", "build", "failed", "again", "on", "main", "branch", "I", "will", "look", "into", "it", "after",
    "standup", "great", "work", "team", "release", "notes", "are", "ready", "for", "review", "please", "check",
    "ticket", "and", "let", "know", "what", "think", "weekend", "plans", "game", "tonight", "who", "is", "in", "ok"};

/* A chat message as JSON of about `payload` bytes; the #M header opens its text. */
static size_t json_msg(char *out, int idx, int step, uint64_t seq) {
    char *p = out;
    p += sprintf(p, "{\"type\":\"message\",\"from\":\"user-%05d\",\"text\":\"#M", idx);
    put_digits(p, (uint64_t)idx, 5);
    put_digits(p + 5, (uint64_t)step, 4);
    put_digits(p + 9, seq, 10);
    put_digits(p + 19, now_ns(), 20);
    p += 39;
    uint32_t r = (uint32_t)(seq * 2654435761u) ^ (uint32_t)idx;
    char *text_end = out + payload - 32;
    while (p < text_end) {
        r ^= r << 13; r ^= r >> 17; r ^= r << 5;
        const char *w = WORDS[r % (sizeof WORDS / sizeof *WORDS)];
        *p++ = ' ';
        size_t n = strlen(w);
        memcpy(p, w, n);
        p += n;
    }
    p += sprintf(p, "\",\"timestamp\":%llu}", 1764720000000ull + seq);
    return (size_t)(p - out);
}

/* Queue one benchmark message (64-byte payload, wrapped as 42["msg","..."] for Socket.IO). */
static void queue_msg(conn *c, int step) {
    char buf[4200], *p = buf;
    if (json_payload) {
        queue_frame(c, 1, (uint8_t *)buf, json_msg(buf, c->idx, step, c->seq++));
        return;
    }
    if (proto_sio) { memcpy(p, "42[\"msg\",\"", 10); p += 10; }
    p[0] = '#'; p[1] = 'M';
    put_digits(p + 2, (uint64_t)c->idx, 5);
    put_digits(p + 7, (uint64_t)step, 4);
    put_digits(p + 11, c->seq++, 10);
    put_digits(p + 21, now_ns(), 20);
    memset(p + 41, 'x', (size_t)payload - 41);
    p += payload;
    if (proto_sio) { memcpy(p, "\"]", 2); p += 2; }
    queue_frame(c, 1, (uint8_t *)buf, (size_t)(p - buf));
}

static uint64_t parse_digits(const uint8_t *p, int width) {
    uint64_t v = 0;
    for (int i = 0; i < width; i++) v = v * 10 + (uint64_t)(p[i] - '0');
    return v;
}

/* ---- connection lifecycle ---- */
static void launch(int slot);

static void conn_close(conn *c) {
    if (c->state == S_FREE) return;
    int was_open = c->state == S_OPEN && !(c->role & R_SLOW);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
    if (c->inflater) { inflateEnd(c->inflater); free(c->inflater); c->inflater = NULL; }
    close(c->fd);
    c->fd = -1;
    c->state = S_FREE;
    c->inlen = c->outlen = 0;
    if (was_open && readers > 0) readers--;
    if (c->incap > 65536) { free(c->in); c->in = NULL; c->incap = 0; }
}

static void next_launch(void);

static void on_fail(conn *c) {
    failed++;
    conn_close(c);
    next_launch();
}

static void on_established(conn *c) {
    uint64_t t = now_ns();
    c->state = S_OPEN;
    established++;
    last_established_ns = t;
    if (mode == M_CHURN) {
        static const uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
        queue_frame(c, 8, code, 2);
        c->state = S_CLOSING;
        c->deadline = t + (uint64_t)(hs_timeout * 1e9);
        conn_flush(c);
        return;
    }
    if (!(c->role & R_SLOW)) readers++;
    if (mode == M_IDLE) {
        /* An idle connection only ever gets a ping: give its buffers back, so the next connection's
         * malloc reuses them instead of faulting in fresh pages (8.6 % of the generator's CPU per
         * handshake in `perf`, 5 KiB per connection). */
        if (!c->inlen) { free(c->in); c->in = NULL; c->incap = 0; }
        if (!c->outlen) { free(c->out); c->out = NULL; c->outcap = 0; }
    }
    set_events(c, base_events(c) | (c->outlen ? EPOLLOUT : 0));
    if (mode == M_ECHO && t_start) { queue_msg(c, 1); conn_flush(c); }
    next_launch();
}

static void on_message(conn *c, const uint8_t *p, size_t len) {
    if (proto_sio || json_payload) {
        const uint8_t *q = memchr(p, '#', len);
        if (!q) return;
        len -= (size_t)(q - p);
        p = q;
    }
    if (len < 41 || p[0] != '#' || p[1] != 'M') return;
    uint64_t t = rx_now, sent = parse_digits(p + 21, 20);
    int step = (int)parse_digits(p + 7, 4);
    last_rx = t;
    if (mode == M_ECHO) {
        if (measuring) { step_received++; hist_add(t - sent); }
        if (t_start) { queue_msg(c, 1); conn_flush(c); }
        return;
    }
    if (step == cur_step && cur_step) { step_received++; hist_add(t - sent); }
    else step_late++;
}

static void on_frame(conn *c, int op, uint8_t *p, size_t len) {
    if (op == 9) { queue_frame(c, 10, p, len); conn_flush(c); return; }
    if (op == 10) return;
    if (op == 8) {
        if (c->state == S_CLOSING) return; /* wait for the server's FIN so TIME_WAIT lands there */
        closed_by_server++;
        if (c->state == S_OPEN) dropped++;
        queue_frame(c, 8, p, len < 2 ? len : 2);
        conn_flush(c);
        conn_close(c);
        return;
    }
    if (!proto_sio) { if (c->state == S_OPEN) on_message(c, p, len); return; }
    if (len == 1 && p[0] == '2') { queue_text(c, "3"); conn_flush(c); return; } /* engine.io ping */
    if (c->state == S_SIO_OPEN && len && p[0] == '0') {
        queue_text(c, "40");
        c->state = S_SIO_CONNECT;
        conn_flush(c);
        return;
    }
    if (c->state == S_SIO_CONNECT && len >= 2 && p[0] == '4' && p[1] == '0') { on_established(c); return; }
    if (c->state == S_SIO_CONNECT && len >= 2 && p[0] == '4' && p[1] == '4') { on_fail(c); return; }
    if (c->state == S_OPEN && len > 2 && p[0] == '4' && p[1] == '2') on_message(c, p, len);
}

/* A compressed message: inflated on every tenth client (and with the server's context kept
 * between messages where it keeps one), counted by its frame on the others. */
static void on_compressed(conn *c, int op, uint8_t *p, size_t len) {
    static uint8_t out[1 << 20];
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    if (c->idx % 10 != 0 || c->state != S_OPEN) {
        if (c->state == S_OPEN) {
            last_rx = rx_now;
            if (mode == M_ECHO) { if (measuring) step_received++; if (t_start) { queue_msg(c, 1); conn_flush(c); } }
            else if (cur_step) step_received++;
        }
        return;
    }
    if (!c->inflater) {
        c->inflater = calloc(1, sizeof *c->inflater);
        if (inflateInit2(c->inflater, -15) != Z_OK) die("inflateInit2");
    } else if (!c->takeover) {
        inflateReset(c->inflater);
    }
    z_stream *z = c->inflater;
    z->next_out = out;
    z->avail_out = sizeof out;
    z->next_in = p;
    z->avail_in = (uInt)len;
    int r = inflate(z, Z_SYNC_FLUSH);
    z->next_in = (uint8_t *)tail;
    z->avail_in = 4;
    if (r == Z_OK || r == Z_BUF_ERROR) inflate(z, Z_SYNC_FLUSH);
    on_frame(c, op, out, sizeof out - z->avail_out);
}

/* Parse every complete frame in c->in (server frames: unmasked, 7/16/64-bit lengths). */
static void parse_frames(conn *c) {
    size_t off = 0;
    while (c->state != S_FREE) {
        size_t avail = c->inlen - off;
        if (avail < 2) break;
        uint8_t *p = c->in + off;
        int op = p[0] & 0x0f, masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) { if (avail < 4) break; len = ((uint64_t)p[2] << 8) | p[3]; hl = 4; }
        else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
            hl = 10;
        }
        if (masked) hl += 4;
        if (avail < hl + len) { ensure(&c->in, &c->incap, hl + len); break; }
        uint8_t *pl = p + hl;
        if (masked) for (uint64_t i = 0; i < len; i++) pl[i] ^= p[hl - 4 + (i & 3)];
        off += hl + len;
        if ((p[0] & 0x40) && c->deflate) { on_compressed(c, op, pl, (size_t)len); continue; }
        on_frame(c, op, pl, (size_t)len);
    }
    if (c->state == S_FREE) return;
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
}

static void on_handshake_data(conn *c) {
    uint8_t *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end) { if (c->inlen > 16384) on_fail(c); return; }
    if (c->inlen < 12 || memcmp(c->in, "HTTP/1.1 101", 12) != 0) { on_fail(c); return; }
    size_t hl = (size_t)(end - c->in) + 4;
    if (use_deflate && memmem(c->in, hl, "permessage-deflate", 18)) {
        c->deflate = 1;
        c->takeover = memmem(c->in, hl, "server_no_context_takeover", 26) == NULL;
    }
    memmove(c->in, c->in + hl, c->inlen - hl);
    c->inlen -= hl;
    if (proto_sio) c->state = S_SIO_OPEN;
    else on_established(c);
    if (c->state != S_FREE) parse_frames(c);
}

static void tls_handshake(conn *c);

/* TLS: every record the socket has, decrypted into c->in; like recv(): > 0, 0 (closed), -1. */
static ssize_t tls_recv(conn *c) {
    ssize_t got = 0;
    for (;;) {
        if (c->incap - c->inlen < 16384) ensure(&c->in, &c->incap, c->inlen + 65536);
        int n = SSL_read(c->ssl, c->in + c->inlen, (int)(c->incap - c->inlen));
        if (n > 0) { c->inlen += (size_t)n; got += n; continue; }
        int e = SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (!got) errno = EAGAIN;
            return got ? got : -1;
        }
        if (got) return got;
        errno = ECONNRESET;
        return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
}

static void on_readable(conn *c) {
    if (c->ssl && c->state == S_TLS) { tls_handshake(c); return; }
    if (c->incap - c->inlen < 4096) ensure(&c->in, &c->incap, c->inlen + (c->incap < 4096 ? 4096 : c->incap < 65536 ? c->incap : 65536));
    uint64_t raw0 = c->ssl ? BIO_number_read(SSL_get_rbio(c->ssl)) : 0;
    size_t in0 = c->inlen;
    ssize_t n = c->ssl ? tls_recv(c) : recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (c->state == S_CLOSING) { cycles_done++; conn_close(c); next_launch(); return; }
        if (c->state == S_OPEN) { dropped++; conn_close(c); return; }
        on_fail(c);
        return;
    }
    if (n < 0) return;
    n_recv++;
    rx_now = now_ns();
    int full;
    if (c->ssl) {
        n_recv_bytes += BIO_number_read(SSL_get_rbio(c->ssl)) - raw0;
        full = 0;
        (void)in0;
    } else {
        n_recv_bytes += (uint64_t)n;
        full = (size_t)n == c->incap - c->inlen;
        c->inlen += (size_t)n;
    }
    if (full && c->incap < (256u << 10)) ensure(&c->in, &c->incap, c->incap * 2);
    if (c->state == S_HANDSHAKE) on_handshake_data(c);
    else parse_frames(c);
}

static void queue_request(conn *c) {
    char req[640];
    int n = snprintf(req, sizeof req,
                     "GET %s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, query, host, ports[c->idx % nports],
                     use_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
    ensure(&c->out, &c->outcap, c->outlen + (size_t)n);
    memcpy(c->out + c->outlen, req, (size_t)n);
    c->outlen += (size_t)n;
}

/* The TLS handshake, then the upgrade request. */
static void tls_handshake(conn *c) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = S_HANDSHAKE;
        queue_request(c);
        conn_flush(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ) set_events(c, EPOLLIN | EPOLLRDHUP);
    else if (e == SSL_ERROR_WANT_WRITE) set_events(c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    else on_fail(c);
}

static void on_writable(conn *c) {
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { on_fail(c); return; }
        if (use_tls) {
            c->ssl = SSL_new(tls_ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            c->state = S_TLS;
            tls_handshake(c);
            return;
        }
        queue_request(c);
        c->state = S_HANDSHAKE;
    }
    if (c->state == S_TLS) { tls_handshake(c); return; }
    conn_flush(c);
}

static void launch(int slot) {
    conn *c = &conns[slot];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { failed++; started++; return; }
    int one = 1;
    /* An idle connection writes one request: Nagle never holds it back, and the system call
     * would be the generator's CPU spent on every handshake. */
    if (mode != M_IDLE) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (c->role & R_SLOW) { int rb = 4096; setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb); }
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(started % nsrcs));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) { close(fd); failed++; started++; return; }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[slot % nports])};
    inet_pton(AF_INET, host, &dst.sin_addr);
    started++;
    if (!first_connect_ns) first_connect_ns = now_ns();
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) { close(fd); failed++; return; }
    c->fd = fd;
    c->inlen = c->outlen = 0;
    c->deadline = now_ns() + (uint64_t)(hs_timeout * 1e9);
    /* On loopback the TCP handshake has usually completed inside connect(): send the request at
     * once rather than after an EPOLLOUT round, a getsockopt and an epoll_ctl, which made the
     * generator's own CPU the cap on handshakes per second. Not connected yet: wait for EPOLLOUT. */
    if (!use_tls) queue_request(c);
    ssize_t n = use_tls ? 0 : send(fd, c->out, c->outlen, MSG_NOSIGNAL);
    if (n > 0) {
        memmove(c->out, c->out + n, c->outlen - (size_t)n);
        c->outlen -= (size_t)n;
        c->state = S_HANDSHAKE;
    } else {
        c->outlen = 0;
        c->state = S_CONNECTING;
    }
    c->deflate = c->takeover = 0;
    c->events = base_events(c) | (c->outlen ? EPOLLOUT : 0);
    struct epoll_event e = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl add");
}

static long target_total(void) { return mode == M_CHURN ? cycles : nconns; }
static long in_flight(void) {
    return started - established - failed + (mode == M_CHURN ? established - cycles_done : 0);
}

/* Start connections while fewer than --conc handshakes are in flight. */
static void next_launch(void) {
    while (started < target_total() && in_flight() < conc) {
        int slot = -1;
        if (mode == M_CHURN) {
            for (int i = 0; i < nslots; i++) if (conns[i].state == S_FREE) { slot = i; break; }
        } else slot = (int)started;
        if (slot < 0) return;
        launch(slot);
    }
}

static void sweep_timeouts(void) {
    uint64_t t = now_ns();
    for (int i = 0; i < nslots; i++) {
        conn *c = &conns[i];
        if (c->state == S_FREE || c->state == S_OPEN || t < c->deadline) continue;
        if (c->state == S_CLOSING) { cycles_done++; conn_close(c); next_launch(); }
        else on_fail(c);
    }
}

/* ---- event loop ---- */
static int stdin_marker;
static char cmdbuf[256];
static size_t cmdlen;
static int quit_requested, pending_run;
static double pending_rate, pending_secs;

static void on_stdin(void) {
    ssize_t n = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (n <= 0) { quit_requested = 1; return; }
    cmdlen += (size_t)n;
    cmdbuf[cmdlen] = 0;
    char *nl;
    while ((nl = strchr(cmdbuf, '\n'))) {
        *nl = 0;
        if (!strncmp(cmdbuf, "quit", 4)) quit_requested = 1;
        else if (sscanf(cmdbuf, "run %lf %lf", &pending_rate, &pending_secs) == 2) pending_run = 1;
        size_t used = (size_t)(nl - cmdbuf) + 1;
        memmove(cmdbuf, nl + 1, cmdlen - used + 1);
        cmdlen -= used;
    }
}

/* One epoll pass; timeout in ms. */
static void poll_once(int timeout_ms) {
    static struct epoll_event evs[512];
    int n = epoll_wait(epfd, evs, 512, timeout_ms);
    n_polls++;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == &stdin_marker) { on_stdin(); continue; }
        conn *c = evs[i].data.ptr;
        uint32_t ev = evs[i].events;
        if (c->state == S_FREE) continue;
        if ((c->role & R_SLOW) && c->state == S_OPEN) {
            if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) { slow_closed++; conn_close(c); continue; }
            if (ev & EPOLLOUT) conn_flush(c);
            continue;
        }
        if (ev & EPOLLOUT) { on_writable(c); if (c->state == S_FREE) continue; }
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) on_readable(c);
    }
}

static void connect_all(void) {
    uint64_t last_sweep = now_ns();
    next_launch();
    while (established + failed < target_total() && !quit_requested) {
        poll_once(50);
        uint64_t t = now_ns();
        if (t - last_sweep > 200000000ull) { sweep_timeouts(); last_sweep = t; next_launch(); }
    }
}

static void print_connect_json(const char *event) {
    double secs = last_established_ns > first_connect_ns ? (last_established_ns - first_connect_ns) / 1e9 : 0;
    printf("{\"event\":\"%s\",\"established\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"handshakes_per_s\":%.1f,"
           "\"gen_cpu_s\":%.3f}\n",
           event, established, failed, secs, secs > 0 ? established / secs : 0, cpu_seconds());
    fflush(stdout);
}

/* Wait until nothing has arrived for quiet_ms (backlog of an earlier step drained), max max_s. */
static void wait_quiet(int quiet_ms, double max_s) {
    uint64_t t0 = now_ns();
    last_rx = t0;
    while (!quit_requested) {
        poll_once(10);
        uint64_t t = now_ns();
        if (t - last_rx > (uint64_t)quiet_ms * 1000000ull || t - t0 > (uint64_t)(max_s * 1e9)) break;
    }
}

static void run_step(double rate, double secs) {
    static int stepno = 0;
    wait_quiet(300, 15.0);
    stepno = stepno % 9999 + 1;
    hist_reset();
    step_received = step_late = step_sent = step_expected = 0;
    for (int i = 0; i < nslots; i++) conns[i].step_sent = 0;
    long dropped0 = dropped, slow_closed0 = slow_closed;
    uint64_t nr0 = n_recv, nb0 = n_recv_bytes, np0 = n_polls;
    double cpu0 = cpu_seconds();
    step_rate = rate;
    cur_step = stepno;
    int senders[4096], ns = 0;
    for (int i = 0; i < nslots && ns < 4096; i++) if (conns[i].role & R_SENDER) senders[ns++] = i;
    double per = ns ? rate / ns : 0;
    step_t0 = now_ns();
    uint64_t end = step_t0 + (uint64_t)(secs * 1e9);
    uint64_t t;
    long blocked = 0;
    while ((t = now_ns()) < end && !quit_requested) {
        double el = (t - step_t0) / 1e9;
        for (int k = 0; k < ns; k++) {
            conn *c = &conns[senders[k]];
            if (c->state != S_OPEN) continue;
            /* senders are staggered over one period so they do not fire in the same tick */
            uint64_t due = (uint64_t)(el * per + (double)k / ns);
            if (c->step_sent >= due) continue;
            if (c->outlen > MAX_OUT) { blocked++; continue; }
            int r = readers - 1; /* every reading member but the sender */
            while (c->step_sent < due) { queue_msg(c, stepno); c->step_sent++; step_sent++; step_expected += (uint64_t)(r > 0 ? r : 0); }
            conn_flush(c);
        }
        poll_once(1);
    }
    step_t1 = now_ns();
    /* Drain: every expected delivery in, or 2 s past the end (anything later fails p99 anyway). */
    while (step_received < step_expected && now_ns() - step_t1 < 2000000000ull && !quit_requested) poll_once(5);
    uint64_t t_done = now_ns();
    double cpu = cpu_seconds() - cpu0, wall = (t_done - step_t0) / 1e9, win = (step_t1 - step_t0) / 1e9;
    long lost = (long)step_expected - (long)step_received;
    printf("{\"event\":\"step\",\"offered_rate\":%.1f,\"seconds\":%.3f,\"sent\":%lu,\"sent_rate\":%.1f,"
           "\"expected\":%lu,\"received\":%lu,\"lost\":%ld,\"late_other_steps\":%lu,\"deliveries_per_s\":%.1f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"readers\":%d,\"dropped\":%ld,\"slow_closed\":%ld,"
           "\"send_blocked\":%ld,\"recvs\":%lu,\"bytes_per_recv\":%.0f,\"rx_bytes\":%lu,\"polls\":%lu,"
           "\"gen_cpu_s\":%.3f,\"gen_cpu_frac\":%.3f}\n",
           rate, win, (unsigned long)step_sent, step_sent / win, (unsigned long)step_expected,
           (unsigned long)step_received, lost, (unsigned long)step_late, step_received / win, hist_pct(0.50),
           hist_pct(0.99), hist_max / 1e6, readers, dropped - dropped0, slow_closed - slow_closed0, blocked,
           (unsigned long)(n_recv - nr0), n_recv - nr0 ? (double)(n_recv_bytes - nb0) / (n_recv - nr0) : 0,
           (unsigned long)(n_recv_bytes - nb0), (unsigned long)(n_polls - np0), cpu,
           wall > 0 ? cpu / wall : 0);
    fflush(stdout);
    cur_step = 0;
}

static void run_echo(void) {
    t_start = now_ns();
    for (int i = 0; i < nslots; i++) if (conns[i].state == S_OPEN) { queue_msg(&conns[i], 1); conn_flush(&conns[i]); }
    uint64_t w_end = t_start + (uint64_t)(warmup * 1e9);
    while (now_ns() < w_end) poll_once(5);
    hist_reset();
    step_received = 0;
    double cpu0 = cpu_seconds();
    uint64_t nb0 = n_recv_bytes;
    measuring = 1;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(duration * 1e9);
    while (now_ns() < end) poll_once(5);
    measuring = 0;
    double secs = (now_ns() - t0) / 1e9, cpu = cpu_seconds() - cpu0;
    printf("{\"event\":\"echo\",\"conns\":%d,\"seconds\":%.3f,\"messages\":%lu,\"messages_per_s\":%.1f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"dropped\":%ld,\"rx_bytes\":%lu,\"gen_cpu_s\":%.3f,"
           "\"gen_cpu_frac\":%.3f}\n",
           readers, secs, (unsigned long)step_received, step_received / secs, hist_pct(0.5), hist_pct(0.99),
           hist_max / 1e6, dropped, (unsigned long)(n_recv_bytes - nb0), cpu, cpu / secs);
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --mode fanout|echo|idle|churn [--proto ws|sio] [--host H] [--port P[,P2...]] [--path /ws/chat]\n"
            "  [--query '&k=v'] [--size BYTES] [--conns N] [--senders K] [--slow-frac F] [--conc C] [--srcs S] [--cycles N]\n"
            "  [--duration S] [--warmup S] [--timeout S] [--tls 1] [--deflate 1] [--json 1]\n");
    exit(2);
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"mode", 1, 0, 'm'}, {"proto", 1, 0, 'P'}, {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'},
        {"path", 1, 0, 'u'}, {"query", 1, 0, 'q'}, {"conns", 1, 0, 'n'}, {"senders", 1, 0, 's'},
        {"slow-frac", 1, 0, 'f'}, {"conc", 1, 0, 'c'}, {"srcs", 1, 0, 'S'}, {"cycles", 1, 0, 'C'},
        {"size", 1, 0, 'z'}, {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'}, {"timeout", 1, 0, 't'},
        {"tls", 1, 0, 'T'}, {"deflate", 1, 0, 'D'}, {"json", 1, 0, 'J'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            mode = !strcmp(optarg, "fanout") ? M_FANOUT : !strcmp(optarg, "echo") ? M_ECHO
                 : !strcmp(optarg, "idle") ? M_IDLE : !strcmp(optarg, "churn") ? M_CHURN : -1;
            if (mode < 0) usage();
            break;
        case 'P': proto_sio = !strcmp(optarg, "sio"); break;
        case 'h': host = optarg; break;
        case 'p':
            nports = 0;
            for (char *tok = strtok(optarg, ","); tok && nports < 16; tok = strtok(NULL, ",")) ports[nports++] = atoi(tok);
            if (!nports) usage();
            break;
        case 'u': path = optarg; break;
        case 'q': query = optarg; break;
        case 'n': nconns = atoi(optarg); break;
        case 's': nsenders = atoi(optarg); break;
        case 'f': slow_frac = atof(optarg); break;
        case 'c': conc = atoi(optarg); break;
        case 'S': nsrcs = atoi(optarg); break;
        case 'C': cycles = atoi(optarg); break;
        case 'z': payload = atoi(optarg) < 64 ? 64 : atoi(optarg) > 4096 ? 4096 : atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 't': hs_timeout = atof(optarg); break;
        case 'T': use_tls = atoi(optarg); break;
        case 'D': use_deflate = atoi(optarg); break;
        case 'J': json_payload = atoi(optarg); break;
        default: usage();
        }
    }
    if (nsrcs < 1) nsrcs = 1;
    if (use_tls) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx) die("SSL_CTX_new");
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (mode != M_CHURN && (rlim_t)nconns + 16 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: --conns %d exceeds RLIMIT_NOFILE %lu\n", nconns, (unsigned long)rl.rlim_cur);
        return 2;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    nslots = mode == M_CHURN ? conc : nconns;
    conns = calloc((size_t)nslots, sizeof(conn));
    int nslow = (int)(slow_frac * (nconns - nsenders) + 0.5);
    for (int i = 0; i < nslots; i++) {
        conns[i].idx = i;
        conns[i].fd = -1;
        if (mode == M_FANOUT && i < nsenders) conns[i].role |= R_SENDER;
        /* slow clients spread over the non-senders from the end */
        if (mode == M_FANOUT && i >= nslots - nslow) conns[i].role |= R_SLOW;
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &stdin_marker};
    int have_stdin = mode == M_FANOUT || mode == M_IDLE;
    if (have_stdin && epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &e) < 0) have_stdin = 0;

    if (mode == M_CHURN) {
        uint64_t t0 = now_ns(), last_sweep = t0;
        double cpu0 = cpu_seconds();
        next_launch();
        while (cycles_done + failed < cycles) {
            poll_once(50);
            uint64_t t = now_ns();
            if (t - last_sweep > 200000000ull) { sweep_timeouts(); last_sweep = t; next_launch(); }
        }
        double secs = (now_ns() - t0) / 1e9, cpu = cpu_seconds() - cpu0;
        printf("{\"event\":\"churn\",\"cycles\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"cycles_per_s\":%.1f,"
               "\"gen_cpu_s\":%.3f,\"gen_cpu_frac\":%.3f}\n",
               cycles_done, failed, secs, cycles_done / secs, cpu, cpu / secs);
        return 0;
    }
    connect_all();
    print_connect_json("connected");
    if (mode == M_ECHO) { run_echo(); return 0; }
    while (!quit_requested) {
        poll_once(50);
        if (pending_run) { pending_run = 0; run_step(pending_rate, pending_secs); }
        if (!have_stdin) break;
    }
    return 0;
}
