/* The WebSocket wire in C: accept, request heads, frames, writes and backpressure.
 *
 * Why C (bench/RESULTS.md): the kernel takes 6-7 us of every echoed message whatever the server,
 * and 1.5x Node's rate leaves about 1 us for the rest. uvloop's callbacks and a frame parser in
 * Python took 1.4-1.9 us of that before any handler ran.
 *
 * One epoll set holds the listening socket and every connection. The asyncio loop watches the
 * epoll descriptor as a single reader and calls `Wire.poll`, which handles what is ready without
 * blocking (level-triggered, one read per ready connection per poll, so no client starves the
 * others). Python is entered once per request head (routing and the 101), once per message (the
 * dispatcher, with the session), and on the rare paths: a protocol error, a lost connection.
 *
 * A `Conn` is one TCP connection and implements the core's `session.Connection`. It holds no
 * buffer while idle: bytes are parsed where they were read, and only the tail of an unfinished
 * frame, the parts of a fragmented message, or bytes the kernel would not take yet are kept.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef DIESEL_TLS
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#endif
#ifdef DIESEL_DEFLATE
#include <zlib.h>
#endif

#define READ_SIZE 65536
#define MAX_EVENTS 512
/* Connections accepted per readiness of the listening socket, so a connect storm cannot starve
 * the connections already open. */
#define ACCEPT_BATCH 128

/* The 101's extension header when permessage-deflate was negotiated. */
#define DEFLATE_ANSWER "\r\nSec-WebSocket-Extensions: permessage-deflate"

/* What the wire makes of a request head for the handshake (`request_head`, `on_head`). */
enum { HEAD_METHOD, HEAD_PATH, HEAD_QUERY, HEAD_HEADERS, HEAD_ANSWER, HEAD_PARTS };

/* HANDSHAKE: reading the request head. HELD: the head is read and its answer will come later
 * (`Conn.hold`: an async upgrade hook); not reading. OPEN. CLOSING: the server sent its close
 * frame and waits for the client's. SHUT: reading stopped; the socket closes once queued bytes are
 * written. LINGER: all is written and writing is shut down; input is read and dropped until the
 * client closes too (or the close timer fires), so unread input never turns the close into a reset
 * that destroys the close frame or response before the client reads it. GONE: the socket is closed. */
enum { HANDSHAKE, HELD, OPEN, CLOSING, SHUT, LINGER, GONE };
enum { NO_CLOSER, BY_SERVER, BY_CLIENT };

typedef struct {
    unsigned char *data;
    size_t len, cap;
} buffer_t;

static int buffer_append(buffer_t *b, const unsigned char *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (grown == NULL) return -1;
        b->data = grown;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

static void buffer_free(buffer_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* A buffer of bytes received and not yet handled (`in`, `parts`): its capacity counts in `*held`,
 * which may not pass `budget`. Returns 0, -1 (out of memory) or HELD_OVER (over the budget). */
#define HELD_OVER -2

static int held_resize(Py_ssize_t *held, Py_ssize_t budget, buffer_t *b, size_t cap) {
    if (cap > b->cap && *held - (Py_ssize_t)b->cap + (Py_ssize_t)cap > budget) return HELD_OVER;
    unsigned char *moved = realloc(b->data, cap);
    if (moved == NULL) return -1;
    *held += (Py_ssize_t)cap - (Py_ssize_t)b->cap;
    b->data = moved;
    b->cap = cap;
    return 0;
}

static int held_append(Py_ssize_t *held, Py_ssize_t budget, buffer_t *b, const unsigned char *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n) cap *= 2;
        int failed = held_resize(held, budget, b, cap);
        if (failed == HELD_OVER) failed = held_resize(held, budget, b, b->len + n);  /* no room to double */
        if (failed) return failed;
    }
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

/* `used` bytes were handled from the front: keep the rest, and give memory back once a large
 * buffer holds little (a big frame's buffer must not stay behind for the few bytes after it). */
static void held_consumed(Py_ssize_t *held, buffer_t *b, size_t used) {
    b->len -= used;
    if (b->len == 0) {
        *held -= (Py_ssize_t)b->cap;
        buffer_free(b);
        return;
    }
    memmove(b->data, b->data + used, b->len);
    if (b->cap > 65536 && b->len < b->cap / 4) held_resize(held, *held, b, b->len * 2);
}

static void held_free(Py_ssize_t *held, buffer_t *b) {
    *held -= (Py_ssize_t)b->cap;
    buffer_free(b);
}

typedef struct Wire Wire;

/* A script engine's entry for messages, which the wire may call itself: no Python frame between
 * the socket and the engine. The script keeps `function` None while that must not happen (its
 * calls need a pass over promise jobs, or it is unloaded) and `stale` true while the engine must
 * first hear of changes (room counts, closing sessions) through the Python path. */
typedef struct {
    PyObject_HEAD
    PyObject *function;  /* function(handle, message, None, 0) -> result */
    long echo;           /* the result that means: send the message back to its sender */
    char stale;
    /* Entries into the engine, direct or not: the CPU-time limit's interrupt handler reads it. */
    unsigned long long entries;
} Entry;

typedef struct Conn {
    PyObject_HEAD
    Wire *wire;
    int fd;
    unsigned char state, reading, alive, pinged, in_parts, parts_text;
    /* After a plain HTTP answer: read (and drop) what the client still sends while the answer is
     * being written too, not only once it is out (every close lingers then, see LINGER). */
    unsigned char linger;
    /* permessage-deflate: 0 (not negotiated) or the window bits of the server's compressor; whether
     * the fragmented message being received is compressed. */
    unsigned char deflate, parts_deflated;
    /* TLS: bytes have arrived (only the first ones tell a TLS client from another). */
    unsigned char tls_started;
    /* The client's address family (AF_INET or AF_INET6, 0 if neither), taken from accept. */
    unsigned char peer_family;
    unsigned char events;  /* EPOLLIN | EPOLLOUT, which fit a byte */
    /* The first close frame's code (0: none yet) and who sent it, for the access log. */
    unsigned char closer;
    unsigned short close_code;
    PyObject *session;
    /* The session's script entry and its handle in the engine, when its runtime gave them. */
    Entry *entry;
    PyObject *handle;
    /* The asyncio timer that aborts a close the client does not complete. */
    PyObject *timer;
    /* While a plain HTTP request's body is read (`read_body`): what to call with it, and its size. */
    PyObject *on_body;
    Py_ssize_t body_size;
    /* The unparsed tail (or a request body), the parts of a fragmented message (both counted in the
     * wire's `buffered`), bytes not yet written (from out_at). */
    buffer_t in, parts, out;
    size_t out_at;
    /* While in HANDSHAKE: the client's address, the deadline, and the list of handshaking
     * connections, oldest first. From the 101 on, the same place counts the session's traffic
     * (`summary`: the access log and the inspector) and keeps its --message-rate bucket. */
    union {
        struct {
            unsigned char peer[16];
            double deadline;
            struct Conn *prev, *next;
        };
        struct {
            /* Payload bytes and messages from the client; bytes written and messages sent to it
             * (a broadcast counts once per recipient), 64 bits: a long session does not wrap. */
            unsigned long long bytes_in, bytes_out, messages_in, messages_out;
            double full_at;  /* when the message-rate bucket is full again (GCRA) */
            double opened;   /* when the 101 went out; once GONE, the seconds it was open */
        };
    };
#ifdef DIESEL_TLS
    /* TLS (NULL on a plain port): `out` then holds ciphertext, made by the SSL object's BIO. */
    SSL *ssl;
#endif
} Conn;

struct Wire {
    PyObject_HEAD
    int ep, listener, accepting;
    PyObject *on_head, *on_message, *on_finish, *on_lost, *on_failed, *call_soon, *call_later, *log;
    /* The core's outbox: while it holds frames, a direct echo would overtake them. */
    PyObject *outbox;
    Py_ssize_t max_message, max_head;
    /* A connection's queue towards its client (--send-queue-size), and the process-wide budget for
     * what clients make the wire hold while receiving (--max-buffered) with what it holds now. */
    Py_ssize_t send_queue, max_buffered, buffered;
    double handshake_timeout, close_timeout;
    /* --message-rate as a GCRA: seconds per message, and how far ahead of now a connection's
     * bucket may be (the burst); 0: no limit. */
    double message_interval, message_tolerance;
    Conn *first, *last;
    unsigned long long bytes_in, bytes_out, messages_in, direct_calls, direct_frames;
    double message_seconds;
    Py_ssize_t connections;
    /* Connections with an echo queued during this poll, written once every ready connection has
     * been read: the peer is woken once per batch rather than once per message. */
    Conn *echoed[MAX_EVENTS];
    int echoed_count, polling;
#ifdef DIESEL_TLS
    /* The certificate and key new connections are served with (NULL: plain); `load_tls` swaps it,
     * and connections made with the old one keep it until they close. */
    SSL_CTX *tls;
#endif
    /* permessage-deflate may be negotiated (--compression). */
    int compression;
#ifdef DIESEL_DEFLATE
    /* The shared compressors, one per window size a client asked for (index: bits - 8) and per
     * size of message (DEFLATE_LARGE), made on first use; the shared decompressor. No context is
     * kept between messages in either direction, so a connection holds no zlib state. */
    z_stream *deflaters[2][8];
    z_stream *inflater;
    buffer_t inflated, deflated;
    /* The frames last compressed, by identity: a broadcast's bytes are compressed for the first
     * member that negotiated compression and reused for the others. */
#define DEFLATE_CACHE 4
    PyObject *cache_key[DEFLATE_CACHE], *cache_value[DEFLATE_CACHE];
    unsigned char cache_bits[DEFLATE_CACHE];
    int cache_next;
    /* Frames recently compressed, by content: the same broadcast reaches some members joined with
     * other frames of its tick (a sender's own batch skips its message), and is compressed once. */
#define DEFLATE_TABLE 256
    struct deflated {
        uint64_t hash;
        unsigned char *frame, *out;  /* the frame as given, and as compressed (header included) */
        size_t frame_size, out_size;
        unsigned char bits;
    } table[DEFLATE_TABLE];
#endif
    unsigned long long messages_deflated, messages_inflated;
};

static PyTypeObject ConnType, WireType, EntryType;
static PyObject *str_busy, *str_queued, *zero;
static PyObject *wire_frame(PyObject *module, PyObject *message);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A Python callback failed: that is a bug in our Python side, reported without stopping the wire. */
static void report(PyObject *where) {
    PyErr_WriteUnraisable(where);
}

static void log_message(Wire *w, const char *level, PyObject *message) {
    if (message == NULL) {
        report(w->log);
        return;
    }
    PyObject *result = PyObject_CallMethod(w->log, level, "sO", "%s", message);
    Py_DECREF(message);
    if (result == NULL) report(w->log);
    Py_XDECREF(result);
}

/* -- the handshaking list: deadlines are the accept time plus one timeout, so oldest first ---- */

static void handshaking_add(Wire *w, Conn *c) {
    c->deadline = now() + w->handshake_timeout;
    c->prev = w->last;
    c->next = NULL;
    if (w->last) w->last->next = c;
    else w->first = c;
    w->last = c;
}

static void handshaking_remove(Conn *c) {
    Wire *w = c->wire;
    if (c->state != HANDSHAKE) return;  /* past it, the list's fields count traffic */
    if (c->prev == NULL && w->first != c) return;  /* not in the list */
    if (c->prev) c->prev->next = c->next;
    else w->first = c->next;
    if (c->next) c->next->prev = c->prev;
    else w->last = c->prev;
    c->prev = c->next = NULL;
}

/* -- the epoll set ------------------------------------------------------------------------- */

static void listen_again(Wire *w) {
    if (w->accepting || w->listener < 0) return;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->listener, &e) == 0) w->accepting = 1;
}

static void watch(Conn *c) {
    uint32_t events = (c->reading ? EPOLLIN : 0) | (c->out.len > c->out_at ? EPOLLOUT : 0);
    if (events == c->events || c->state == GONE) return;
    struct epoll_event e = {.events = events, .data.ptr = c};
    epoll_ctl(c->wire->ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = events;
}

/* The connection is over for its session, which hears of it now (`direct`, from the poll) or on
 * the next loop iteration (from a method Python called, which may be in the middle of a handler). */
static void conn_detach(Conn *c, int direct) {
    Wire *w = c->wire;
    PyObject *session = c->session;
    c->session = NULL;  /* breaks the session <-> connection cycle */
    if (session) {
        PyObject *result = direct ? PyObject_CallOneArg(w->on_lost, session)
                                  : PyObject_CallFunctionObjArgs(w->call_soon, w->on_lost, session, NULL);
        if (result == NULL) report(w->on_lost);
        Py_XDECREF(result);
        Py_DECREF(session);
    }
}

/* The socket is closed. Drops the epoll set's reference: callers hold their own. */
static void conn_gone(Conn *c, int direct) {
    if (c->state == GONE) return;
    Wire *w = c->wire;
    handshaking_remove(c);
    if (c->session != NULL) c->opened = now() - c->opened;  /* it had its 101: freeze its duration */
    c->state = GONE;
    c->reading = 0;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
#ifdef DIESEL_TLS
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
#endif
    w->connections--;
    listen_again(w);
    buffer_free(&c->out);
    c->out_at = 0;
    if (c->timer) {
        PyObject *result = PyObject_CallMethod(c->timer, "cancel", NULL);
        if (result == NULL) report(c->timer);
        Py_XDECREF(result);
        Py_CLEAR(c->timer);
    }
    Py_CLEAR(c->on_body);  /* a closure holding this connection */
    conn_detach(c, direct);
    Py_DECREF(c);
}

/* Abort after `close_timeout` unless the socket is gone by then: a close must never wait on the
 * client forever. */
static void arm_close_timer(Conn *c) {
    if (c->timer || c->state == GONE) return;
    PyObject *abort = PyObject_GetAttrString((PyObject *)c, "abort");
    if (abort == NULL) {
        report((PyObject *)c);
        return;
    }
    c->timer = PyObject_CallFunction(c->wire->call_later, "dO", c->wire->close_timeout, abort);
    Py_DECREF(abort);
    if (c->timer == NULL) report(c->wire->call_later);
}

/* -- writing ------------------------------------------------------------------------------- */

/* Queue bytes the socket did not take. Bytes already written are dropped from the front before
 * the buffer grows, or once they are as many as those still queued (each byte moves at most once
 * on average), so the buffer occupies at most about twice what is queued. */
static int out_append(Conn *c, const unsigned char *data, size_t n) {
    buffer_t *b = &c->out;
    size_t queued = b->len - c->out_at;
    if (c->out_at && (b->len + n > b->cap || c->out_at >= queued)) {
        memmove(b->data, b->data + c->out_at, queued);
        b->len = queued;
        c->out_at = 0;
    }
    return buffer_append(b, data, n);
}

static size_t conn_queued(Conn *c) {
    return c->out.len - c->out_at;
}

static void conn_linger(Conn *c, int direct);

/* Write what is queued (ciphertext made by TLS, or bytes the socket did not take): what the socket
 * takes now, the rest once it is writable; a shut connection lingers once it is all out. */
static void conn_push(Conn *c, int direct) {
    ssize_t sent = send(c->fd, c->out.data + c->out_at, c->out.len - c->out_at, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) conn_gone(c, direct);
        else watch(c);
        return;
    }
    c->out_at += (size_t)sent;
    if (c->out_at < c->out.len) {
        watch(c);
        return;
    }
    buffer_free(&c->out);
    c->out_at = 0;
    if (c->state == SHUT) conn_linger(c, direct);
    else watch(c);
}

#ifdef DIESEL_TLS
/* -- TLS: OpenSSL with a BIO of our own ------------------------------------------------------
 * The SSL object reads ciphertext from the slice the wire just received (no copy, no buffer per
 * connection) and writes records into the connection's `out`, which the wire sends itself. So a
 * tick's frames for one recipient are encrypted by one SSL_write and sent by one send(), as on a
 * plain port; backpressure is `out`'s size, as on a plain port. */

static BIO_METHOD *tls_bio_method;
/* Ciphertext received for the connection being read; only that connection's SSL reads. */
static const unsigned char *tls_input;
static size_t tls_input_size;

static int tls_bio_write(BIO *bio, const char *data, int size) {
    Conn *c = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    return out_append(c, (const unsigned char *)data, (size_t)size) < 0 ? -1 : size;
}

static int tls_bio_read(BIO *bio, char *data, int size) {
    BIO_clear_retry_flags(bio);
    if (tls_input_size == 0) {
        BIO_set_retry_read(bio);
        return -1;
    }
    size_t n = tls_input_size < (size_t)size ? tls_input_size : (size_t)size;
    memcpy(data, tls_input, n);
    tls_input += n;
    tls_input_size -= n;
    return (int)n;
}

static long tls_bio_ctrl(BIO *bio, int command, long number, void *pointer) {
    return command == BIO_CTRL_FLUSH;  /* records go out when the wire sends `out` */
}

static int tls_bio_create(BIO *bio) {
    BIO_set_init(bio, 1);
    return 1;
}

/* Encrypt into `out`; a connection with nothing queued before sends at once. 0, or -1 (gone). */
static int tls_write(Conn *c, const unsigned char *data, size_t n, int send_now) {
    int queued = c->out.len > c->out_at;
    size_t written;
    if (n && !SSL_write_ex(c->ssl, data, n, &written)) {
        ERR_clear_error();
        conn_gone(c, 0);
        return -1;
    }
    if (send_now && !queued) conn_push(c, 0);
    return 0;
}
#endif

/* Append to `out` without a system call (a batch sent after the poll). 0, or -1 (gone or out of
 * memory). */
static int conn_queue(Conn *c, const unsigned char *data, size_t n) {
#ifdef DIESEL_TLS
    if (c->ssl) return tls_write(c, data, n, 0);
#endif
    return out_append(c, data, n);
}

static void conn_send(Conn *c, const unsigned char *data, size_t n) {
    if (c->state >= SHUT) return;
    c->wire->bytes_out += n;
    if (c->state >= OPEN) c->bytes_out += n;
#ifdef DIESEL_TLS
    if (c->ssl) {
        tls_write(c, data, n, 1);
        return;
    }
#endif
    if (c->out.len == c->out_at) {
        ssize_t sent = send(c->fd, data, n, MSG_NOSIGNAL);
        if (sent == (ssize_t)n) return;
        if (sent < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                conn_gone(c, 0);
                return;
            }
            sent = 0;
        }
        data += sent;
        n -= (size_t)sent;
    }
    if (out_append(c, data, n) < 0) {
        conn_gone(c, 0);  /* out of memory for this client's queue: it loses its connection */
        return;
    }
    watch(c);
}

/* Everything is written: send the FIN, then read and drop input until the client closes too or
 * the close timer fires. The session is over now. */
static void conn_linger(Conn *c, int direct) {
    c->state = LINGER;
    buffer_free(&c->out);
    c->out_at = 0;
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_gone(c, direct);
        return;
    }
    c->reading = 1;
    watch(c);
    arm_close_timer(c);
    conn_detach(c, direct);
}

/* The socket takes more. */
static void conn_writable(Conn *c) {
    conn_push(c, 1);
}

static void send_close(Conn *c, int code, const char *reason, size_t size) {
    unsigned char frame[127];
    if (!c->close_code) {
        c->close_code = (unsigned short)code;
        c->closer = BY_SERVER;
    }
    if (size > 123) {  /* a control frame's limit; cut on a character boundary (strict clients fail with 1007) */
        size = 123;
        while (size > 0 && ((unsigned char)reason[size] & 0xC0) == 0x80) size--;
    }
    frame[0] = 0x88;
    frame[1] = (unsigned char)(2 + size);
    frame[2] = (unsigned char)(code >> 8);
    frame[3] = (unsigned char)code;
    memcpy(frame + 4, reason, size);
    conn_send(c, frame, 4 + size);
}

/* Stop reading; close the socket once what is queued is written. */
static void conn_shut(Conn *c) {
    if (c->state >= SHUT) return;
    handshaking_remove(c);
#ifdef DIESEL_TLS
    if (c->ssl && SSL_is_init_finished(c->ssl) && SSL_shutdown(c->ssl) < 0) ERR_clear_error();  /* close_notify */
#endif
    c->state = SHUT;
    c->reading = c->linger;
    c->in_parts = 0;
    if (conn_queued(c) == 0) {
        conn_linger(c, 0);
        return;
    }
    watch(c);
    arm_close_timer(c);
}

/* -- permessage-deflate (RFC 7692) --------------------------------------------------------------
 * Negotiated with no context takeover in both directions (the server asks it of the client, which
 * every client must then honour): a message is compressed and inflated on its own, by compressors
 * the whole wire shares. So a connection costs no zlib memory, and a broadcast is compressed once
 * for all the members that negotiated it, like uWebSockets' shared compressor. */

/* The header of a server frame (unmasked) with `size` bytes of payload; returns its length. */
static size_t frame_header(unsigned char *out, unsigned char first, size_t size) {
    out[0] = first;
    if (size < 126) {
        out[1] = (unsigned char)size;
        return 2;
    }
    if (size < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(size >> 8);
        out[3] = (unsigned char)size;
        return 4;
    }
    out[1] = 127;
    for (int k = 0; k < 8; k++) out[2 + k] = (unsigned char)((uint64_t)size >> (56 - 8 * k));
    return 10;
}

#ifdef DIESEL_DEFLATE
/* Messages shorter than this go out as they are: what deflate saves does not pay for its work. */
#define DEFLATE_MIN 32
/* Messages of this size and more are compressed with zlib's default memLevel (8) rather than 4. */
#define DEFLATE_LARGE 4096

static z_stream *deflater(Wire *w, int bits, size_t size) {
    int large = size >= DEFLATE_LARGE;
    z_stream **slot = &w->deflaters[large][bits - 8];
    if (*slot == NULL) {
        z_stream *z = calloc(1, sizeof *z);
        /* zlib's raw deflate has no 256-byte window: a client that asked for 8 bits gets a 512-byte
         * one with matches at distance 1 only (run-length), valid for any window. A small hash
         * (memLevel 4) for small messages, because it is cleared for every message; it makes a
         * large one slower to compress (a 128 KiB binary message 3x, text 1.4x), and worse. */
        if (z == NULL || deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, bits == 8 ? -9 : -bits, large ? 8 : 4,
                                      bits == 8 ? Z_RLE : Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return NULL;
        }
        *slot = z;
    }
    return *slot;
}

/* One data frame compressed onto `out` (RSV1 set, the sync flush's final 00 00 ff ff dropped), or
 * copied as it is when that would not make it smaller. -1: out of memory (nothing appended). */
static int deflate_frame(Wire *w, int bits, unsigned char first, const unsigned char *payload, size_t size,
                         buffer_t *out) {
    z_stream *z = size >= DEFLATE_MIN ? deflater(w, bits, size) : NULL;
    buffer_t *d = &w->deflated;
    if (z != NULL) {
        size_t bound = deflateBound(z, size) + 16;
        if (d->cap < bound) {
            buffer_free(d);
            if ((d->data = malloc(bound)) == NULL) return -1;
            d->cap = bound;
        }
        deflateReset(z);
        z->next_in = (unsigned char *)payload;
        z->avail_in = (uInt)size;
        z->next_out = d->data;
        z->avail_out = (uInt)d->cap;
        int result = deflate(z, Z_SYNC_FLUSH);
        d->len = d->cap - z->avail_out;
        if (result == Z_OK && z->avail_in == 0 && d->len >= 4 && d->len - 4 < size) {
            unsigned char header[10];
            size_t n = frame_header(header, first | 0x40, d->len - 4);
            if (buffer_append(out, header, n) < 0 || buffer_append(out, d->data, d->len - 4) < 0) return -1;
            w->messages_deflated++;
            if (d->cap > (1u << 18)) buffer_free(d);
            return 0;
        }
        if (d->cap > (1u << 18)) buffer_free(d);
    }
    unsigned char header[10];
    size_t n = frame_header(header, first, size);
    return buffer_append(out, header, n) < 0 || buffer_append(out, payload, size) < 0 ? -1 : 0;
}

/* Frames up to this size are remembered by content (DEFLATE_TABLE). */
#define DEFLATE_REMEMBER 16384

static uint64_t frame_hash(const unsigned char *data, size_t size, int bits) {
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)bits;  /* FNV-1a */
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 0x100000001b3ULL;
    return h;
}

/* One whole data frame of ours compressed onto `out`, from the table when it was compressed
 * lately. -1: out of memory. */
static int deflate_remembered(Wire *w, int bits, const unsigned char *frame, size_t header, size_t size,
                              buffer_t *out) {
    size_t whole = header + size;
    if (size < DEFLATE_MIN || whole > DEFLATE_REMEMBER) return deflate_frame(w, bits, frame[0], frame + header, size, out);
    uint64_t hash = frame_hash(frame, whole, bits);
    struct deflated *e = &w->table[hash % DEFLATE_TABLE];
    if (e->frame && e->hash == hash && e->bits == bits && e->frame_size == whole && memcmp(e->frame, frame, whole) == 0)
        return buffer_append(out, e->out, e->out_size);
    size_t start = out->len;
    if (deflate_frame(w, bits, frame[0], frame + header, size, out) < 0) return -1;
    unsigned char *copy = malloc(whole + (out->len - start));
    if (copy != NULL) {  /* not remembered if there is no memory for it: nothing is lost */
        free(e->frame);
        memcpy(copy, frame, whole);
        memcpy(copy + whole, out->data + start, out->len - start);
        *e = (struct deflated){hash, copy, copy + whole, whole, out->len - start, (unsigned char)bits};
    }
    return 0;
}

/* Frames the wire made (final, unmasked, text or binary; control frames pass as they are) as a
 * client that negotiated compression gets them. NULL with a Python error. */
static PyObject *deflate_frames(Wire *w, int bits, const unsigned char *data, size_t size) {
    buffer_t out = {0};
    size_t at = 0;
    while (at < size) {
        size_t left = size - at, header = 2;
        const unsigned char *f = data + at;
        uint64_t length = left >= 2 ? f[1] & 0x7F : 0;
        if (length == 126) header = 4;
        else if (length == 127) header = 10;
        if (left < header) break;
        if (header == 4) length = ((uint64_t)f[2] << 8) | f[3];
        else if (header == 10)
            for (int k = 2; k < 10; k++) length = (length << 8) | f[k];
        if (left - header < length) break;
        int opcode = f[0] & 0x0F;
        int plain = (f[0] & 0xF0) == 0x80 && (opcode == 0x1 || opcode == 0x2);
        int failed = plain ? deflate_remembered(w, bits, f, header, (size_t)length, &out)
                           : buffer_append(&out, f, header + (size_t)length);
        if (failed) {
            buffer_free(&out);
            return PyErr_NoMemory();
        }
        at += header + (size_t)length;
    }
    if (at < size && buffer_append(&out, data + at, size - at) < 0) {  /* not frames of ours: as they are */
        buffer_free(&out);
        return PyErr_NoMemory();
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    buffer_free(&out);
    return result;
}

/* deflate_frames for a bytes object written to many connections: compressed once per window size. */
static PyObject *deflate_cached(Wire *w, int bits, PyObject *frames) {
    for (int i = 0; i < DEFLATE_CACHE; i++)
        if (w->cache_key[i] == frames && w->cache_bits[i] == bits) return Py_NewRef(w->cache_value[i]);
    PyObject *value = deflate_frames(w, bits, (const unsigned char *)PyBytes_AS_STRING(frames),
                                     (size_t)PyBytes_GET_SIZE(frames));
    if (value == NULL) return NULL;
    int i = w->cache_next;
    w->cache_next = (i + 1) % DEFLATE_CACHE;
    Py_XSETREF(w->cache_key[i], Py_NewRef(frames));
    Py_XSETREF(w->cache_value[i], Py_NewRef(value));
    w->cache_bits[i] = (unsigned char)bits;
    return value;
}

/* A compressed message's payload inflated into w->inflated, never past max_message (a
 * decompression bomb stops there). 0, or the close code: 1009 too big, 1007 not valid deflate
 * data (or context taken over although the server's answer forbade it), 1011 out of memory. */
static int inflate_message(Wire *w, const unsigned char *payload, size_t size, size_t *inflated) {
    static const unsigned char tail[4] = {0x00, 0x00, 0xFF, 0xFF};
    z_stream *z = w->inflater;
    if (z == NULL) {
        z = calloc(1, sizeof *z);
        if (z == NULL || inflateInit2(z, -15) != Z_OK) {
            free(z);
            return 1011;
        }
        w->inflater = z;
    } else {
        inflateReset(z);
    }
    buffer_t *b = &w->inflated;
    size_t limit = (size_t)w->max_message, produced = 0;
    int result = Z_OK;
    for (int part = 0; part < 2 && result != Z_STREAM_END; part++) {
        z->next_in = (unsigned char *)(part ? tail : payload);
        z->avail_in = (uInt)(part ? sizeof tail : size);
        while (z->avail_in > 0 || produced == b->cap) {
            if (produced == b->cap) {
                if (b->cap > limit) return 1009;
                size_t cap = b->cap ? b->cap * 2 : 16384;
                if (cap > limit + 1) cap = limit + 1;
                unsigned char *grown = realloc(b->data, cap);
                if (grown == NULL) return 1011;
                b->data = grown;
                b->cap = cap;
            }
            z->next_out = b->data + produced;
            z->avail_out = (uInt)(b->cap - produced);
            result = inflate(z, Z_SYNC_FLUSH);
            produced = b->cap - z->avail_out;
            if (result == Z_STREAM_END) break;
            if (result == Z_BUF_ERROR && z->avail_out > 0) break;  /* no progress left to make */
            if (result != Z_OK && result != Z_BUF_ERROR) return 1007;
        }
    }
    if (produced > limit) return 1009;
    *inflated = produced;
    w->messages_inflated++;
    return 0;
}
#endif

/* -- reading ------------------------------------------------------------------------------- */

/* The close codes that may appear in a close frame (RFC 6455 section 7.4): the registered ones
 * (not 1004-1006 or 1015, which never go on the wire) and the private range 3000-4999. */
static int valid_close_code(long code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* A protocol or limit violation: the session is told, a close frame with the code goes out, and
 * the socket closes without waiting for the client's reply. Returns 0 (stop parsing). */
static int conn_fail(Conn *c, int code, const char *reason) {
    Wire *w = c->wire;
    PyObject *result = PyObject_CallFunction(w->on_failed, "Ois", c->session ? c->session : Py_None, code, reason);
    if (result == NULL) report(w->on_failed);
    Py_XDECREF(result);
    if (c->state == OPEN) send_close(c, code, reason, strlen(reason));
    conn_shut(c);
    return 0;
}

static int fail_too_big(Conn *c) {
    char reason[64];
    snprintf(reason, sizeof reason, "message over %zd bytes", c->wire->max_message);
    return conn_fail(c, 1009, reason);
}

/* Bytes received that must wait (an unfinished frame or message) and the memory or the process's
 * --max-buffered budget cannot take: 1013, try again later (the message itself is within limits). */
static int hold(Conn *c, buffer_t *b, const unsigned char *data, size_t n) {
    Wire *w = c->wire;
    int failed = held_append(&w->buffered, w->max_buffered, b, data, n);
    if (failed == HELD_OVER) return conn_fail(c, 1013, "server busy: receive buffers full, try again later");
    if (failed) return conn_fail(c, 1011, "out of memory");
    return 1;
}

static int attribute_is_true(PyObject *object, PyObject *name) {
    PyObject *value = PyObject_GetAttr(object, name);
    if (value == NULL) {
        PyErr_Clear();
        return 1;  /* unknown: take the Python path */
    }
    int is_true = value == Py_True;
    Py_DECREF(value);
    return is_true;
}

/* The engine may be entered directly: the script allows it, nothing is queued for the client
 * (here or in the outbox, which a direct echo would overtake), and the session is not waiting on
 * an async hook (its messages then wait in its inbox). */
static int direct_ok(Conn *c) {
    Entry *e = c->entry;
    return e != NULL && e->function != NULL && e->function != Py_None && !e->stale && c->out.len == c->out_at &&
           !attribute_is_true(c->session, str_busy) && !attribute_is_true(c->wire->outbox, str_queued);
}

static int is_echo(PyObject *result, long echo) {
    if (!PyLong_CheckExact(result)) return 0;
    long code = PyLong_AsLong(result);
    if (code == -1 && PyErr_Occurred()) {
        PyErr_Clear();  /* too large for a C long: not the echo */
        return 0;
    }
    return code == echo;
}

/* One message into the engine: nothing to do and an echo are handled here, any other result (or
 * an error) by the Python side, `on_finish(session, message, result, failed)`. */
static void conn_direct(Conn *c, PyObject *message) {
    Wire *w = c->wire;
    Entry *e = (Entry *)Py_NewRef(c->entry);
    e->entries++;
    w->direct_calls++;
    PyObject *args[4] = {c->handle, message, Py_None, zero};
    PyObject *result = PyObject_Vectorcall(e->function, args, 4, NULL);
    int failed = result == NULL, done = 0;
    if (failed) {
        PyObject *type, *traceback;
        PyErr_Fetch(&type, &result, &traceback);
        PyErr_NormalizeException(&type, &result, &traceback);
        if (result == NULL) result = Py_NewRef(Py_None);
        Py_XDECREF(type);
        Py_XDECREF(traceback);
    } else if (result == Py_None) {
        done = 1;
    } else if (is_echo(result, e->echo)) {
        /* The message came in as valid UTF-8, so only memory can fail here. */
        PyObject *frame = wire_frame(NULL, message);
#ifdef DIESEL_DEFLATE
        if (frame != NULL && c->deflate)
            Py_SETREF(frame, deflate_frames(w, c->deflate, (const unsigned char *)PyBytes_AS_STRING(frame),
                                            (size_t)PyBytes_GET_SIZE(frame)));
#endif
        if (frame != NULL) {
            w->direct_frames++;
            c->messages_out++;
            const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(frame);
            size_t size = (size_t)PyBytes_GET_SIZE(frame);
            if (w->polling && w->echoed_count < MAX_EVENTS && conn_queue(c, data, size) == 0) {
                w->bytes_out += size;
                c->bytes_out += size;
                w->echoed[w->echoed_count++] = (Conn *)Py_NewRef(c);
            } else {
                conn_send(c, data, size);
            }
            Py_DECREF(frame);
            done = 1;
        } else {
            report((PyObject *)c);
        }
    }
    if (!done) {
        PyObject *finish = PyObject_CallFunctionObjArgs(w->on_finish, c->session, message, result,
                                                        failed ? Py_True : Py_False, NULL);
        if (finish == NULL) report(w->on_finish);
        Py_XDECREF(finish);
    }
    Py_DECREF(result);
    Py_DECREF(e);
}

/* --message-rate: may the connection send one more message now? A token bucket kept as the time
 * it is full again (GCRA): one double per connection, no timer. */
static int within_rate(Conn *c) {
    Wire *w = c->wire;
    double t = now(), full = (c->full_at > t ? c->full_at : t) + w->message_interval;
    if (full - t > w->message_tolerance) return 0;
    c->full_at = full;
    return 1;
}

static int conn_message(Conn *c, const unsigned char *payload, size_t size, int text) {
    if (c->state != OPEN || c->session == NULL) return 1;  /* the server is closing: dropped */
    if (c->wire->message_interval > 0 && !within_rate(c)) return conn_fail(c, 1008, "message rate exceeded");
    PyObject *message = text ? PyUnicode_DecodeUTF8((const char *)payload, (Py_ssize_t)size, NULL)
                             : PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)size);
    if (message == NULL) {
        if (text && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            return conn_fail(c, 1007, "invalid UTF-8 in a text message");
        }
        report((PyObject *)c);
        return conn_fail(c, 1011, "out of memory");
    }
    Wire *w = c->wire;
    double started = now();
    if (text && direct_ok(c)) conn_direct(c, message);
    else {
        PyObject *args[2] = {c->session, message};
        PyObject *result = PyObject_Vectorcall(w->on_message, args, 2, NULL);
        if (result == NULL) report(w->on_message);
        Py_XDECREF(result);
    }
    w->message_seconds += now() - started;
    w->messages_in++;
    c->messages_in++;
    Py_DECREF(message);
    return c->state == OPEN || c->state == CLOSING;
}

/* The client's close frame: answer it (unless it answers ours) and close the socket. */
static int conn_closed_by_peer(Conn *c, const unsigned char *payload, size_t size) {
    int code = 1000;
    if (size >= 2) {
        code = (payload[0] << 8) | payload[1];
        if (!valid_close_code(code)) {
            char reason[40];
            snprintf(reason, sizeof reason, "invalid close code %d", code);
            return conn_fail(c, 1002, reason);
        }
        PyObject *text = PyUnicode_DecodeUTF8((const char *)payload + 2, (Py_ssize_t)size - 2, NULL);
        if (text == NULL) {
            PyErr_Clear();
            return conn_fail(c, 1007, "invalid UTF-8 in the close reason");
        }
        Py_DECREF(text);
    } else if (size == 1) {
        return conn_fail(c, 1002, "a close payload of one byte");
    }
    if (c->session) {
        PyObject *result = PyObject_CallMethod(c->session, "mark_closing", NULL);
        if (result == NULL) report(c->session);
        Py_XDECREF(result);
    }
    if (!c->close_code) {
        c->close_code = (unsigned short)(size >= 2 ? code : 1005);  /* 1005: no code given */
        c->closer = BY_CLIENT;
    }
    if (c->state == OPEN) send_close(c, code, "", 0);
    conn_shut(c);
    return 0;
}

/* A whole message, compressed or not. */
static int conn_payload(Conn *c, const unsigned char *payload, size_t size, int text, int compressed) {
#ifdef DIESEL_DEFLATE
    if (compressed) {
        Wire *w = c->wire;
        size_t inflated;
        int code = inflate_message(w, payload, size, &inflated);
        if (code == 1009) return fail_too_big(c);
        if (code) return conn_fail(c, code, code == 1007 ? "invalid compressed data" : "out of memory");
        int going = conn_message(c, w->inflated.data, inflated, text);
        if (w->inflated.cap > (1u << 18)) buffer_free(&w->inflated);
        return going;
    }
#endif
    return conn_message(c, payload, size, text);
}

/* One whole, unmasked frame. Returns 0 once the connection stops reading. */
static int conn_frame(Conn *c, unsigned char first, const unsigned char *payload, size_t size) {
    Wire *w = c->wire;
    int opcode = first & 0x0F, final = first & 0x80, compressed = 0;
    c->alive = 1;
    w->bytes_in += size;
    c->bytes_in += size;
    if (first & 0x70) {
        /* RSV1 marks a compressed message, on its first frame only. */
        if ((first & 0x70) != 0x40 || !c->deflate || (opcode != 0x1 && opcode != 0x2))
            return conn_fail(c, 1002, "reserved bits set without an extension");
        compressed = 1;
    }
    switch (opcode) {
    case 0x1:
    case 0x2:
        if (c->in_parts) return conn_fail(c, 1002, "new message before the fragmented one finished");
        if (final) return conn_payload(c, payload, size, opcode == 0x1, compressed);
        c->in_parts = 1;
        c->parts_deflated = (unsigned char)compressed;
        c->parts_text = opcode == 0x1;
        c->parts.len = 0;
        return hold(c, &c->parts, payload, size);
    case 0x0: {
        if (!c->in_parts) return conn_fail(c, 1002, "continuation frame without a message to continue");
        if (c->parts.len + size > (size_t)w->max_message) return fail_too_big(c);
        if (!hold(c, &c->parts, payload, size)) return 0;
        if (!final) return 1;
        c->in_parts = 0;
        buffer_t parts = c->parts;
        c->parts = (buffer_t){0};
        int going = conn_payload(c, parts.data, parts.len, c->parts_text, c->parts_deflated);
        held_free(&w->buffered, &parts);
        return going;
    }
    case 0x8:
    case 0x9:
    case 0xA:
        if (!final || size > 125) return conn_fail(c, 1002, "control frames must be final and at most 125 bytes");
        if (opcode == 0x8) return conn_closed_by_peer(c, payload, size);
        if (opcode == 0x9 && c->state == OPEN) {
            unsigned char pong[127] = {0x8A, (unsigned char)size};
            memcpy(pong + 2, payload, size);
            conn_send(c, pong, 2 + size);
            /* Pongs count against the queue like any frame: a client that pings and never reads is a
             * slow consumer. */
            if (c->state == OPEN && conn_queued(c) > (size_t)w->send_queue) return conn_fail(c, 1008, "send queue full");
        }
        return 1;
    default: {
        char reason[32];
        snprintf(reason, sizeof reason, "unknown opcode %d", opcode);
        return conn_fail(c, 1002, reason);
    }
    }
}

static void unmask(unsigned char *p, size_t n, const unsigned char *key) {
    uint32_t key32;
    memcpy(&key32, key, 4);
    uint64_t key64 = ((uint64_t)key32 << 32) | key32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= key64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

/* Every whole frame in data; returns the bytes used. Stops when the connection stops reading. */
static size_t conn_frames(Conn *c, unsigned char *data, size_t size) {
    size_t at = 0;
    while (c->state == OPEN || c->state == CLOSING) {
        size_t left = size - at, header = 2;
        if (left < 2) break;
        unsigned char *f = data + at;
        uint64_t length = f[1] & 0x7F;
        if (length == 126) {
            if (left < 4) break;
            length = ((uint64_t)f[2] << 8) | f[3];
            header = 4;
        } else if (length == 127) {
            if (left < 10) break;
            length = 0;
            for (int k = 2; k < 10; k++) length = (length << 8) | f[k];
            header = 10;
        }
        if (!(f[1] & 0x80)) {
            conn_fail(c, 1002, "client frames must be masked");
            break;
        }
        if (length > (uint64_t)c->wire->max_message) {
            fail_too_big(c);
            break;
        }
        header += 4;
        if (left < header || left - header < length) break;
        unsigned char *payload = f + header;
        unmask(payload, (size_t)length, payload - 4);
        at += header + (size_t)length;
        if (!conn_frame(c, f[0], payload, (size_t)length)) break;
    }
    return at;
}

/* The peer's address as text; IPv4 without inet_ntop, whose printf machinery showed in profiles. */
static PyObject *peer_address(Conn *c) {
    char text[INET6_ADDRSTRLEN] = "";
    if (c->peer_family == AF_INET) {
        char *o = text;
        for (int i = 0; i < 4; i++) {
            unsigned v = c->peer[i];
            if (v >= 100) *o++ = (char)('0' + v / 100);
            if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = '.';
        }
        o[-1] = 0;
    } else if (c->peer_family) {
        inet_ntop(c->peer_family, c->peer, text, sizeof text);
    }
    return PyUnicode_FromString(text);
}

static int request_parts(const char *head, size_t size, PyObject *parts[HEAD_PARTS], int compression,
                         unsigned char *deflate);
static int refused_parts(PyObject *parts[HEAD_PARTS], int status, const char *reason);

/* The request head is complete, or refused with `status` (head NULL): Python routes it with its
 * parts and the answer computed here, and answers by `accept` or `respond`. */
static void conn_head(Conn *c, const unsigned char *head, size_t size, int status, const char *reason) {
    Wire *w = c->wire;
    PyObject *parts[HEAD_PARTS] = {NULL};
    int ok = head ? request_parts((const char *)head, size, parts, w->compression, &c->deflate)
                  : refused_parts(parts, status, reason);
    PyObject *peer = ok == 0 ? peer_address(c) : NULL;
    PyObject *result = NULL;
    if (peer != NULL) {
        PyObject *args[] = {(PyObject *)c, parts[HEAD_METHOD], parts[HEAD_PATH], parts[HEAD_QUERY],
                            parts[HEAD_HEADERS], peer, parts[HEAD_ANSWER]};
        result = PyObject_Vectorcall(w->on_head, args, 7, NULL);
    }
    if (result == NULL) report(w->on_head);
    Py_XDECREF(result);
    Py_XDECREF(peer);
    for (int i = 0; i < HEAD_PARTS; i++) Py_XDECREF(parts[i]);
    /* Not answered and no body wanted: only after an error above. */
    if (c->state == HANDSHAKE && c->on_body == NULL) conn_gone(c, 1);
}

/* A request body (`read_body`) is complete once `body_size` bytes are in: reading stops (bytes past
 * it are never read), `on_body(body)` is called, and the answer (`respond`) may come later, within
 * a fresh handshake timeout. */
static void conn_body(Conn *c) {
    if ((Py_ssize_t)c->in.len < c->body_size) return;
    PyObject *on_body = c->on_body;
    c->on_body = NULL;
    c->reading = 0;
    watch(c);
    handshaking_remove(c);
    handshaking_add(c->wire, c);
    PyObject *body = PyBytes_FromStringAndSize((const char *)c->in.data, c->body_size);
    held_free(&c->wire->buffered, &c->in);
    PyObject *result = body != NULL ? PyObject_CallOneArg(on_body, body) : NULL;
    if (result == NULL) report(on_body);
    Py_XDECREF(result);
    Py_XDECREF(body);
    Py_DECREF(on_body);
    if (result == NULL && c->state == HANDSHAKE) conn_gone(c, 1);
}

/* The next "\r\n" in [p, end), or NULL. memchr for the '\n' is vectorised where glibc's memmem of a
 * two-byte needle is not: memmem was 8 % of a handshake's instructions (callgrind). */
static const char *find_crlf(const char *p, const char *end) {
    const char *start = p;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) return NULL;
        if (nl > start && nl[-1] == '\r') return nl - 1;
        p = nl + 1;
    }
    return NULL;
}

/* Where the request head in [p, end) ends: its "\r\n\r\n", the first line end followed by another
 * (memmem of the four bytes was 2 % of a handshake), or NULL. */
static const char *find_head_end(const char *p, const char *end) {
    for (const char *crlf; (crlf = find_crlf(p, end)) != NULL; p = crlf + 2)
        if (end - crlf >= 4 && crlf[2] == '\r' && crlf[3] == '\n') return crlf;
    return NULL;
}

/* Bytes read from the socket: the request head first, then frames. */
static void conn_received(Conn *c, unsigned char *data, size_t size) {
    Wire *w = c->wire;
    if (c->state == HANDSHAKE) {
        size_t from = c->in.len > 3 ? c->in.len - 3 : 0;
        int failed = held_append(&w->buffered, w->max_buffered, &c->in, data, size);
        if (failed) {
            if (failed == HELD_OVER) conn_head(c, NULL, 0, 503, "server busy, try again later");
            else conn_gone(c, 1);
            return;
        }
        if (c->on_body != NULL) {
            conn_body(c);
            return;
        }
        const char *in = (const char *)c->in.data;
        const char *end = find_head_end(in + from, in + c->in.len);
        size_t head = end ? (size_t)(end - in) : c->in.len;
        if (head > (size_t)w->max_head) {  /* arrived whole or not: the limit is the same */
            conn_head(c, NULL, 0, 431, "request head too large");
            return;
        }
        if (end == NULL) return;
        conn_head(c, c->in.data, head, 0, NULL);
        int body = c->state == HANDSHAKE && c->on_body != NULL;
        if (c->state == HELD) held_free(&w->buffered, &c->in);  /* a client sends nothing more before the 101 */
        /* The head is handled even when onOpen already closed the session: the client's close reply
         * comes after it. */
        if (c->state != OPEN && c->state != CLOSING && !body) return;
        held_consumed(&w->buffered, &c->in, head + 4);
        if (body) {
            conn_body(c);
            return;
        }
        if (c->in.len == 0) return;
        data = NULL;
        size = 0;
    }
    if (c->state != OPEN && c->state != CLOSING) return;
    if (c->in.len) {
        if (size && !hold(c, &c->in, data, size)) return;
        data = c->in.data;
        size = c->in.len;
    }
    size_t used = conn_frames(c, data, size);
    if (c->state != OPEN && c->state != CLOSING) return;
    if (data == c->in.data) held_consumed(&w->buffered, &c->in, used);
    else if (used < size) hold(c, &c->in, data + used, size - used);
}

#ifdef DIESEL_TLS
/* The first bytes on a TLS port are not a TLS record: an HTTP client is told so in plain text, any
 * other is dropped. */
static void tls_refuse_plain(Conn *c, const unsigned char *data) {
    static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                 "Content-Length: 45\r\nConnection: close\r\n\r\n"
                                 "this port speaks TLS: use https:// or wss://\n";
    if (data[0] >= 'A' && data[0] <= 'Z') {
        ssize_t sent = send(c->fd, answer, sizeof answer - 1, MSG_NOSIGNAL);
        (void)sent;  /* best effort: the connection closes either way */
    }
    conn_gone(c, 1);
}

/* Ciphertext arrived: the TLS handshake, then the plaintext as on a plain port, in batches of up to
 * READ_SIZE (several records), until the SSL object needs more input. */
static void tls_readable(Conn *c) {
    static unsigned char data[READ_SIZE], plain[READ_SIZE];
    ssize_t got = recv(c->fd, data, READ_SIZE, 0);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_gone(c, 1);
        return;
    }
    if (!c->tls_started && data[0] != 0x16) {  /* 0x16: a handshake record */
        tls_refuse_plain(c, data);
        return;
    }
    c->tls_started = 1;
    tls_input = data;
    tls_input_size = (size_t)got;
    int error = SSL_ERROR_NONE;
    while (c->state < SHUT && error == SSL_ERROR_NONE) {
        if (!SSL_is_init_finished(c->ssl)) {
            int done = SSL_do_handshake(c->ssl);
            if (done <= 0) error = SSL_get_error(c->ssl, done);
            continue;
        }
        size_t filled = 0, n;
        while (filled < READ_SIZE) {
            if (!SSL_read_ex(c->ssl, plain + filled, READ_SIZE - filled, &n)) {
                error = SSL_get_error(c->ssl, 0);
                break;
            }
            filled += n;
        }
        if (filled) conn_received(c, plain, filled);
    }
    tls_input = NULL;
    tls_input_size = 0;
    ERR_clear_error();
    if (c->state >= SHUT) return;
    if (error != SSL_ERROR_WANT_READ) {
        /* The client's close_notify, or a failed handshake: its alert goes out first if it can. */
        if (c->out.len > c->out_at) {
            ssize_t sent = send(c->fd, c->out.data + c->out_at, c->out.len - c->out_at, MSG_NOSIGNAL);
            (void)sent;
        }
        conn_gone(c, 1);
        return;
    }
    if (c->out.len > c->out_at && !(c->events & EPOLLOUT)) conn_push(c, 1);
}
#endif

static void conn_readable(Conn *c) {
    static unsigned char data[READ_SIZE];
#ifdef DIESEL_TLS
    if (c->ssl) {
        tls_readable(c);
        if (c->state >= SHUT) {
            held_free(&c->wire->buffered, &c->in);
            held_free(&c->wire->buffered, &c->parts);
        }
        return;
    }
#endif
    ssize_t got = recv(c->fd, data, READ_SIZE, 0);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_gone(c, 1);
        return;
    }
    if (c->state == LINGER) return;  /* dropped */
    conn_received(c, data, (size_t)got);
    if (c->state >= SHUT) {
        held_free(&c->wire->buffered, &c->in);
        held_free(&c->wire->buffered, &c->parts);
    }
}

static void wire_accept(Wire *w) {
    for (int k = 0; k < ACCEPT_BATCH; k++) {
        struct sockaddr_storage address;
        socklen_t address_size = sizeof address;
        int fd = accept4(w->listener, (struct sockaddr *)&address, &address_size, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == ECONNABORTED || errno == EINTR) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting until a connection closes or the next sweep,
                 * rather than spin on a listening socket that stays ready. */
                epoll_ctl(w->ep, EPOLL_CTL_DEL, w->listener, NULL);
                w->accepting = 0;
                log_message(w, "warning", PyUnicode_FromFormat(
                    "cannot accept connections (%s) with %zd open; pausing accept", strerror(errno), w->connections));
            }
            return;
        }
        Conn *c = PyObject_New(Conn, &ConnType);
        if (c == NULL) {
            PyErr_Clear();
            close(fd);
            return;
        }
        c->wire = (Wire *)Py_NewRef(w);
        c->fd = fd;
        c->state = HANDSHAKE;
        c->reading = 1;
        c->alive = 1;
        c->pinged = c->in_parts = c->parts_text = c->linger = c->deflate = c->parts_deflated = c->tls_started = 0;
        c->events = EPOLLIN;
        c->closer = NO_CLOSER;
        c->close_code = 0;
        c->session = c->timer = c->handle = c->on_body = NULL;
        c->body_size = 0;
        c->entry = NULL;
        c->in = c->parts = c->out = (buffer_t){0};
        c->out_at = 0;
        c->peer_family = (unsigned char)address.ss_family;
        if (address.ss_family == AF_INET) memcpy(c->peer, &((struct sockaddr_in *)&address)->sin_addr, 4);
        else if (address.ss_family == AF_INET6) memcpy(c->peer, &((struct sockaddr_in6 *)&address)->sin6_addr, 16);
        else c->peer_family = 0;
#ifdef DIESEL_TLS
        c->ssl = NULL;
        if (w->tls) {
            BIO *bio = BIO_new(tls_bio_method);
            c->ssl = bio ? SSL_new(w->tls) : NULL;
            if (c->ssl == NULL) {
                BIO_free(bio);
                ERR_clear_error();
                c->fd = -1;
                Py_DECREF(c);
                close(fd);
                return;
            }
            BIO_set_data(bio, c);
            SSL_set_bio(c->ssl, bio, bio);
            SSL_set_accept_state(c->ssl);
        }
#endif
        handshaking_add(w, c);
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e);  /* the set's reference is the new object's */
        w->connections++;
        /* With TCP_DEFER_ACCEPT the request head has usually arrived already: read it now rather
         * than after another epoll round. */
        Py_INCREF(c);
        conn_readable(c);
        Py_DECREF(c);
    }
}

/* -- Conn: the core's session.Connection ----------------------------------------------------- */

/* How many whole frames `data` holds (what `Conn.write` is given is frames, as the outbox joined
 * them): the session's messages out, counted by their headers. */
static uint32_t frames_in(const unsigned char *data, size_t size) {
    uint32_t count = 0;
    size_t at = 0;
    while (size - at >= 2) {
        uint64_t length = data[at + 1] & 0x7F;
        size_t header = 2;
        if (length == 126 && size - at >= 4) {
            length = ((uint64_t)data[at + 2] << 8) | data[at + 3];
            header = 4;
        } else if (length == 127 && size - at >= 10) {
            length = 0;
            for (int k = 2; k < 10; k++) length = (length << 8) | data[at + k];
            header = 10;
        }
        count++;
        if (length > size - at - header) break;
        at += header + (size_t)length;
    }
    return count;
}

static PyObject *Conn_write(Conn *c, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (c->state == OPEN || c->state == CLOSING) c->messages_out += frames_in(view.buf, (size_t)view.len);
#ifdef DIESEL_DEFLATE
    if (c->deflate && PyBytes_CheckExact(data) && (c->state == OPEN || c->state == CLOSING)) {
        PyObject *deflated = deflate_cached(c->wire, c->deflate, data);
        if (deflated != NULL) {
            conn_send(c, (const unsigned char *)PyBytes_AS_STRING(deflated), (size_t)PyBytes_GET_SIZE(deflated));
            Py_DECREF(deflated);
            PyBuffer_Release(&view);
            return PyLong_FromSize_t(c->state == GONE ? 0 : c->out.len - c->out_at);
        }
        PyErr_Clear();  /* out of memory: the frames as they are, which are valid too */
    }
#endif
    conn_send(c, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromSize_t(c->state == GONE ? 0 : conn_queued(c));
}

static PyObject *Conn_close(Conn *c, PyObject *args) {
    int code;
    const char *reason;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "is#", &code, &reason, &size)) return NULL;
    if (c->state == OPEN) {
        c->state = CLOSING;
        send_close(c, code, reason, (size_t)size);
        arm_close_timer(c);
    }
    Py_RETURN_NONE;
}

static PyObject *Conn_pause_reading(Conn *c, PyObject *unused) {
    if (c->state < SHUT) {
        c->reading = 0;
        watch(c);
    }
    Py_RETURN_NONE;
}

static PyObject *Conn_resume_reading(Conn *c, PyObject *unused) {
    if (c->state < SHUT) {
        c->reading = 1;
        watch(c);
    }
    Py_RETURN_NONE;
}

static PyObject *Conn_abort(Conn *c, PyObject *unused) {
    conn_gone(c, 0);
    Py_RETURN_NONE;
}

static PyObject *Conn_keepalive(Conn *c, PyObject *unused) {
    if (c->alive) {
        c->alive = 0;
        c->pinged = 0;
    } else if (c->pinged) {
        PyObject *id = c->session ? PyObject_GetAttrString(c->session, "id") : NULL;
        PyErr_Clear();
        log_message(c->wire, "info", PyUnicode_FromFormat("session %S: no answer to ping, closing",
                                                          id ? id : Py_None));
        Py_XDECREF(id);
        conn_gone(c, 0);
    } else if (c->state == OPEN) {
        static const unsigned char ping[2] = {0x89, 0};
        c->pinged = 1;
        conn_send(c, ping, 2);
    }
    Py_RETURN_NONE;
}

/* Once per handshake, as is `direct`: both take their arguments without a tuple to parse
 * (METH_FASTCALL; PyArg_ParseTuple was 2 % of a handshake's instructions). */
static int two_arguments(const char *name, Py_ssize_t nargs) {
    if (nargs == 2) return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", name, nargs);
    return -1;
}

static PyObject *Conn_accept(Conn *c, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer response;
    if (two_arguments("accept", nargs) < 0 || PyObject_GetBuffer(args[0], &response, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *session = args[1];
    int answerable = c->state == HANDSHAKE || c->state == HELD, held = c->state == HELD;
    if (answerable) {
        /* Open before the 101 goes out: if the send fails, the session hears of it. */
        handshaking_remove(c);
        c->state = OPEN;
        /* Compression as negotiated for the head, if the answer given still says so. */
        if (c->deflate && memmem(response.buf, (size_t)response.len, DEFLATE_ANSWER, sizeof DEFLATE_ANSWER - 1) == NULL)
            c->deflate = 0;
        c->bytes_in = c->bytes_out = 0;
        c->messages_in = c->messages_out = 0;
        c->full_at = 0;
        c->opened = now();
        Py_XSETREF(c->session, Py_NewRef(session));
        conn_send(c, response.buf, (size_t)response.len);
        if (held && c->state == OPEN) {
            c->reading = 1;
            watch(c);
        }
    }
    PyBuffer_Release(&response);
    return PyBool_FromLong(answerable);
}

static PyObject *Conn_hold(Conn *c, PyObject *unused) {
    if (c->state != HANDSHAKE) return PyFloat_FromDouble(0.0);
    double left = c->deadline - now();
    handshaking_remove(c);
    c->state = HELD;
    c->reading = 0;
    watch(c);
    return PyFloat_FromDouble(left > 0 ? left : 0.0);
}

static PyObject *Conn_summary(Conn *c, PyObject *unused) {
    static const char *const closers[] = {NULL, "server", "client"};
    if (c->state < OPEN) return Py_BuildValue("(iiiidiz)", 0, 0, 0, 0, 0.0, 0, NULL);
    double seconds = c->state == GONE ? c->opened : now() - c->opened;
    return Py_BuildValue("(KKKKdiz)", c->messages_in, c->bytes_in, c->messages_out, c->bytes_out, seconds,
                         (int)c->close_code, closers[c->closer]);
}

static PyObject *Conn_respond(Conn *c, PyObject *args) {
    Py_buffer view;
    int linger = 0;
    if (!PyArg_ParseTuple(args, "y*|p", &view, &linger)) return NULL;
    if (c->state == HANDSHAKE || c->state == HELD) {
        c->linger = (unsigned char)linger;
        conn_send(c, view.buf, (size_t)view.len);
        conn_shut(c);
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *Conn_read_body(Conn *c, PyObject *args) {
    Py_ssize_t size;
    PyObject *on_body;
    if (!PyArg_ParseTuple(args, "nO", &size, &on_body)) return NULL;
    if (size < 0 || size > c->wire->max_message)
        return PyErr_Format(PyExc_ValueError, "a body of 0 to %zd bytes, not %zd", c->wire->max_message, size);
    if (c->state != HANDSHAKE || c->on_body != NULL)
        return PyErr_Format(PyExc_RuntimeError, "read_body is for a request head being answered");
    c->on_body = Py_NewRef(on_body);
    c->body_size = size;
    Py_RETURN_NONE;
}

static PyObject *Conn_direct(Conn *c, PyObject *const *args, Py_ssize_t nargs) {
    if (two_arguments("direct", nargs) < 0) return NULL;
    PyObject *entry = args[0], *handle = args[1];
    if (entry != Py_None && !PyObject_TypeCheck(entry, &EntryType))
        return PyErr_Format(PyExc_TypeError, "an Entry or None, not %s", Py_TYPE(entry)->tp_name);
    Py_CLEAR(c->entry);
    Py_CLEAR(c->handle);
    if (entry != Py_None) {
        c->entry = (Entry *)Py_NewRef(entry);
        c->handle = Py_NewRef(handle);
    }
    Py_RETURN_NONE;
}

static void Conn_dealloc(Conn *c) {
#ifdef DIESEL_TLS
    if (c->ssl) SSL_free(c->ssl);
#endif
    held_free(&c->wire->buffered, &c->in);
    held_free(&c->wire->buffered, &c->parts);
    buffer_free(&c->out);
    Py_XDECREF(c->session);
    Py_XDECREF(c->entry);
    Py_XDECREF(c->handle);
    Py_XDECREF(c->timer);
    Py_XDECREF(c->on_body);
    Py_XDECREF(c->wire);
    PyObject_Free(c);
}

static PyMethodDef Conn_methods[] = {
    {"write", (PyCFunction)Conn_write, METH_O,
     "write(frames) -> bytes still queued: send now what the socket takes, queue the rest."},
    {"close", (PyCFunction)Conn_close, METH_VARARGS,
     "close(code, reason): send a close frame; abort if the client has not closed within close_timeout."},
    {"pause_reading", (PyCFunction)Conn_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)Conn_resume_reading, METH_NOARGS, NULL},
    {"abort", (PyCFunction)Conn_abort, METH_NOARGS, "Close the socket now."},
    {"keepalive", (PyCFunction)Conn_keepalive, METH_NOARGS,
     "Once per ping interval: ping a silent client, drop one that did not answer the last ping."},
    {"accept", (PyCFunction)(void (*)(void))Conn_accept, METH_FASTCALL,
     "accept(response, session) -> bool: send the 101; frames go to session. False if the connection was "
     "gone (or answered) already."},
    {"hold", (PyCFunction)Conn_hold, METH_NOARGS,
     "hold() -> seconds: the head's answer comes later (accept or respond); the wire stops reading and no "
     "longer times the handshake: the holder must answer within the seconds returned, what is left of it."},
    {"summary", (PyCFunction)Conn_summary, METH_NOARGS,
     "summary() -> (messages_in, bytes_in, messages_out, bytes_out, seconds, close_code, closed_by) of the "
     "session since its 101: payload bytes in, bytes written out, seconds open (until the socket closed), "
     "the first close frame's code (0: none) and who sent it (\"server\", \"client\" or None)."},
    {"respond", (PyCFunction)Conn_respond, METH_VARARGS,
     "respond(response, linger=False): answer a plain HTTP request, then close once the client closed too (or "
     "after close_timeout), dropping what it still sends; with linger, also while the answer is being written."},
    {"read_body", (PyCFunction)Conn_read_body, METH_VARARGS,
     "read_body(size, on_body): from on_head, read a request body of size bytes (at most max_message_size) "
     "and call on_body(body); the answer (`respond`) may then come later, within handshake_timeout."},
    {"direct", (PyCFunction)(void (*)(void))Conn_direct, METH_FASTCALL,
     "direct(entry, handle): hand this session's text messages to a script engine's Entry with its handle "
     "(None, None: to on_message)."},
    {NULL},
};

static PyTypeObject ConnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dieselengine._wire.Conn",
    .tp_doc = "One TCP connection; made by Wire when it accepts.",
    .tp_basicsize = sizeof(Conn),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)Conn_dealloc,
    .tp_methods = Conn_methods,
};

/* -- Wire: the listening socket and the epoll set ------------------------------------------- */

static PyObject *Wire_poll(Wire *w, PyObject *unused) {
    struct epoll_event events[MAX_EVENTS];
    int ready = epoll_wait(w->ep, events, MAX_EVENTS, 0);
    w->polling = 1;
    for (int k = 0; k < ready; k++) {
        Conn *c = events[k].data.ptr;
        if (c == NULL) {
            if (w->accepting) wire_accept(w);
            continue;
        }
        uint32_t got = events[k].events;
        Py_INCREF(c);
        if ((got & EPOLLOUT) && c->state != GONE) conn_writable(c);
        if (c->state != GONE) {
            if (c->reading && (got & (EPOLLIN | EPOLLHUP | EPOLLERR))) conn_readable(c);
            else if (got & (EPOLLHUP | EPOLLERR)) conn_gone(c, 1);
        }
        Py_DECREF(c);
    }
    w->polling = 0;
    for (int k = 0; k < w->echoed_count; k++) {
        Conn *c = w->echoed[k];
        if (c->state != GONE && c->out.len > c->out_at) {
            conn_writable(c);
            watch(c);
        }
        Py_DECREF(c);
    }
    w->echoed_count = 0;
    Py_RETURN_NONE;
}

static PyObject *Wire_sweep(Wire *w, PyObject *unused) {
    double t = now();
    while (w->first && w->first->deadline <= t) {
        Conn *c = w->first;
        Py_INCREF(c);
        conn_gone(c, 1);
        Py_DECREF(c);
    }
    listen_again(w);
    Py_RETURN_NONE;
}

static PyObject *Wire_stop_accepting(Wire *w, PyObject *unused) {
    if (w->accepting) epoll_ctl(w->ep, EPOLL_CTL_DEL, w->listener, NULL);
    w->accepting = 0;
    w->listener = -1;
    Py_RETURN_NONE;
}

static PyObject *Wire_fileno(Wire *w, PyObject *unused) {
    return PyLong_FromLong(w->ep);
}

#ifdef DIESEL_TLS
/* A server context for a certificate chain and its key (PEM files), or NULL with a ValueError. */
static SSL_CTX *tls_context(const char *certfile, const char *keyfile) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *failed = NULL;
    if (ctx == NULL) failed = "cannot make a TLS context";
    else if (!SSL_CTX_use_certificate_chain_file(ctx, certfile)) failed = "cannot load the certificate";
    else if (!SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM)) failed = "cannot load the private key";
    else if (!SSL_CTX_check_private_key(ctx)) failed = "the private key does not match the certificate";
    unsigned long code = ERR_peek_last_error();
    if (failed && ERR_GET_LIB(code) == ERR_LIB_X509 && ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH)
        failed = "the private key does not match the certificate";
    if (failed) {
        char detail[256] = "";
        if (code) ERR_error_string_n(code, detail, sizeof detail);
        ERR_clear_error();
        PyErr_Format(PyExc_ValueError, "%s (%s, %s)%s%s", failed, certfile, keyfile, *detail ? ": " : "", detail);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    /* No read or write buffers held by an idle connection; no server-side session cache (tickets
     * resume sessions without one). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}
#endif

static PyObject *Wire_load_tls(Wire *w, PyObject *args) {
    const char *certfile, *keyfile;
    if (!PyArg_ParseTuple(args, "ss", &certfile, &keyfile)) return NULL;
#ifdef DIESEL_TLS
    SSL_CTX *ctx = tls_context(certfile, keyfile);
    if (ctx == NULL) return NULL;
    if (w->tls) SSL_CTX_free(w->tls);  /* connections made with it hold their own reference */
    w->tls = ctx;
    Py_RETURN_NONE;
#else
    PyErr_SetString(PyExc_ValueError, "the C wire was built without TLS (OpenSSL's headers were missing)");
    return NULL;
#endif
}

static PyObject *Wire_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"listener", "on_head", "on_message", "on_finish", "on_lost", "on_failed", "outbox",
                            "loop", "log", "max_message_size", "max_head_size", "handshake_timeout",
                            "close_timeout", "compression", "message_rate", "message_burst", "send_queue_size",
                            "max_buffered", NULL};
    int listener;
    PyObject *on_head, *on_message, *on_finish, *on_lost, *on_failed, *outbox, *loop, *log;
    Py_ssize_t max_message, max_head, send_queue = PY_SSIZE_T_MAX, max_buffered = PY_SSIZE_T_MAX;
    double handshake_timeout, close_timeout, message_rate = 0, message_burst = 0;
    int compression = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOOOOOOOOnndd|pdd$nn", names, &listener, &on_head, &on_message,
                                     &on_finish, &on_lost, &on_failed, &outbox, &loop, &log, &max_message,
                                     &max_head, &handshake_timeout, &close_timeout, &compression, &message_rate,
                                     &message_burst, &send_queue, &max_buffered))
        return NULL;
    if (max_message <= 0 || max_head <= 0 || send_queue <= 0 || max_buffered <= 0)
        return PyErr_Format(PyExc_ValueError, "sizes and limits must be positive");
    Wire *w = (Wire *)type->tp_alloc(type, 0);
    if (w == NULL) return NULL;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->listener = listener;
    if (w->ep < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(w);
        return NULL;
    }
    w->on_head = Py_NewRef(on_head);
    w->on_message = Py_NewRef(on_message);
    w->on_finish = Py_NewRef(on_finish);
    w->outbox = Py_NewRef(outbox);
    w->on_lost = Py_NewRef(on_lost);
    w->on_failed = Py_NewRef(on_failed);
    w->log = Py_NewRef(log);
    w->call_soon = PyObject_GetAttrString(loop, "call_soon");
    w->call_later = PyObject_GetAttrString(loop, "call_later");
    if (w->call_soon == NULL || w->call_later == NULL) {
        Py_DECREF(w);
        return NULL;
    }
    w->max_message = max_message;
    w->max_head = max_head;
    w->send_queue = send_queue;
    w->max_buffered = max_buffered;
    w->handshake_timeout = handshake_timeout;
    w->close_timeout = close_timeout;
#ifdef DIESEL_DEFLATE
    w->compression = compression;
#endif
    if (message_rate > 0) {
        w->message_interval = 1.0 / message_rate;
        /* a burst of N: N messages at once fit; the slack absorbs rounding in the sum */
        w->message_tolerance = (message_burst > 0 ? message_burst : message_rate) * w->message_interval * (1 + 1e-9);
    }
    /* Accepted sockets inherit TCP_NODELAY from the listening one on Linux: one system call per
     * server instead of one per connection. TCP_DEFER_ACCEPT: a connection is handed over once its
     * client has sent something (a WebSocket client always speaks first), as Bun's listener does. */
    int one = 1;
    setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(listener, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
    listen_again(w);
    if (!w->accepting) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(w);
        return NULL;
    }
    return (PyObject *)w;
}

static void Wire_dealloc(Wire *w) {
    if (w->ep >= 0) close(w->ep);
#ifdef DIESEL_TLS
    if (w->tls) SSL_CTX_free(w->tls);
#endif
#ifdef DIESEL_DEFLATE
    for (int large = 0; large < 2; large++)
        for (int bits = 0; bits < 8; bits++)
            if (w->deflaters[large][bits]) {
                deflateEnd(w->deflaters[large][bits]);
                free(w->deflaters[large][bits]);
            }
    if (w->inflater) {
        inflateEnd(w->inflater);
        free(w->inflater);
    }
    buffer_free(&w->inflated);
    buffer_free(&w->deflated);
    for (int i = 0; i < DEFLATE_CACHE; i++) {
        Py_XDECREF(w->cache_key[i]);
        Py_XDECREF(w->cache_value[i]);
    }
    for (int i = 0; i < DEFLATE_TABLE; i++) free(w->table[i].frame);
#endif
    Py_XDECREF(w->on_head);
    Py_XDECREF(w->on_message);
    Py_XDECREF(w->on_finish);
    Py_XDECREF(w->outbox);
    Py_XDECREF(w->on_lost);
    Py_XDECREF(w->on_failed);
    Py_XDECREF(w->log);
    Py_XDECREF(w->call_soon);
    Py_XDECREF(w->call_later);
    Py_TYPE(w)->tp_free(w);
}

static PyMethodDef Wire_methods[] = {
    {"poll", (PyCFunction)Wire_poll, METH_NOARGS, "Handle whatever is ready, without blocking."},
    {"sweep", (PyCFunction)Wire_sweep, METH_NOARGS,
     "Drop connections past their handshake deadline; accept again if descriptors ran out."},
    {"stop_accepting", (PyCFunction)Wire_stop_accepting, METH_NOARGS, NULL},
    {"fileno", (PyCFunction)Wire_fileno, METH_NOARGS, "The epoll descriptor, for the asyncio loop to watch."},
    {"load_tls", (PyCFunction)Wire_load_tls, METH_VARARGS,
     "load_tls(certfile, keyfile): serve new connections over TLS with this certificate chain and key (PEM); "
     "connections already open keep theirs. ValueError, with OpenSSL's reason, if they cannot be used."},
    {NULL},
};

static PyMemberDef Wire_members[] = {
    {"bytes_in", T_ULONGLONG, offsetof(Wire, bytes_in), READONLY, "Payload bytes received."},
    {"bytes_out", T_ULONGLONG, offsetof(Wire, bytes_out), READONLY, "Bytes written to clients."},
    {"messages_in", T_ULONGLONG, offsetof(Wire, messages_in), READONLY, "Messages received."},
    {"message_seconds", T_DOUBLE, offsetof(Wire, message_seconds), READONLY,
     "Time spent handling messages as they arrived (the handler's synchronous part, and its dispatch)."},
    {"direct_calls", T_ULONGLONG, offsetof(Wire, direct_calls), READONLY, "Messages the wire handed to an engine itself."},
    {"direct_frames", T_ULONGLONG, offsetof(Wire, direct_frames), READONLY, "Echoes the wire sent itself."},
    {"messages_deflated", T_ULONGLONG, offsetof(Wire, messages_deflated), READONLY,
     "Messages compressed (permessage-deflate), once however many clients they went to."},
    {"messages_inflated", T_ULONGLONG, offsetof(Wire, messages_inflated), READONLY,
     "Compressed messages received and inflated."},
    {"buffered", T_PYSSIZET, offsetof(Wire, buffered), READONLY,
     "Bytes held for clients while receiving (request heads, unfinished frames and messages), within max_buffered."},
    {NULL},
};

static PyTypeObject WireType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dieselengine._wire.Wire",
    .tp_doc = "Wire(listener, on_head, on_message, on_finish, on_lost, on_failed, outbox, loop, log, "
              "max_message_size, max_head_size, handshake_timeout, close_timeout, compression=False, message_rate=0, "
              "message_burst=0): the server's sockets; with compression, permessage-deflate is negotiated when a "
              "client offers it; with a message rate, a session past it is closed with 1008.",
    .tp_basicsize = sizeof(Wire),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Wire_new,
    .tp_dealloc = (destructor)Wire_dealloc,
    .tp_methods = Wire_methods,
    .tp_members = Wire_members,
};

/* -- Entry -------------------------------------------------------------------------------------- */

static PyObject *Entry_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"echo", NULL};
    long echo;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "l", names, &echo)) return NULL;
    Entry *e = (Entry *)type->tp_alloc(type, 0);
    if (e == NULL) return NULL;
    e->function = Py_NewRef(Py_None);
    e->echo = echo;
    return (PyObject *)e;
}

static void Entry_dealloc(Entry *e) {
    Py_XDECREF(e->function);
    Py_TYPE(e)->tp_free(e);
}

static PyMemberDef Entry_members[] = {
    {"function", T_OBJECT, offsetof(Entry, function), 0,
     "function(handle, message, None, 0) -> result, or None: no direct calls."},
    {"stale", T_BOOL, offsetof(Entry, stale), 0, "True while the engine must hear of changes first."},
    {"entries", T_ULONGLONG, offsetof(Entry, entries), 0, "Entries into the engine, direct or not."},
    {NULL},
};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dieselengine._wire.Entry",
    .tp_doc = "Entry(echo): a script engine's entry for messages, which the wire calls itself; a result equal "
              "to echo sends the message back to its sender.",
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Entry_new,
    .tp_dealloc = (destructor)Entry_dealloc,
    .tp_members = Entry_members,
};

/* -- frames for clients ---------------------------------------------------------------------- */

static PyObject *wire_frame(PyObject *module, PyObject *message) {
    const char *data;
    Py_ssize_t size;
    unsigned char first;
    Py_buffer view = {0};
    if (PyUnicode_Check(message)) {
        data = PyUnicode_AsUTF8AndSize(message, &size);
        if (data == NULL) return NULL;
        first = 0x81;
    } else if (PyBytes_Check(message) || PyByteArray_Check(message) || PyMemoryView_Check(message)) {
        if (PyObject_GetBuffer(message, &view, PyBUF_SIMPLE) < 0) return NULL;
        data = view.buf;
        size = view.len;
        first = 0x82;
    } else {
        return PyErr_Format(PyExc_TypeError, "a message must be str or bytes, not %s", Py_TYPE(message)->tp_name);
    }
    size_t header = size < 126 ? 2 : size < 65536 ? 4 : 10;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)header + size);
    if (frame != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
        out[0] = first;
        if (header == 2) {
            out[1] = (unsigned char)size;
        } else if (header == 4) {
            out[1] = 126;
            out[2] = (unsigned char)(size >> 8);
            out[3] = (unsigned char)size;
        } else {
            out[1] = 127;
            for (int k = 0; k < 8; k++) out[2 + k] = (unsigned char)((uint64_t)size >> (56 - 8 * k));
        }
        memcpy(out + header, data, (size_t)size);
    }
    if (view.obj) PyBuffer_Release(&view);
    return frame;
}

/* -- the upgrade: RFC 6455 section 4.2 ------------------------------------------------------- */

/* SHA-1 of the key and the GUID (the accept key), from a library, never our own: OpenSSL's where
 * the wire links it (it uses the CPU's SHA instructions; its context and algorithm are made once,
 * as OpenSSL 3 fetches an algorithm on every EVP_sha1 digest), else Python's hashlib. 0, or -1
 * with a Python error. */
#ifdef DIESEL_TLS
static int sha1_digest(const unsigned char *data, size_t n, unsigned char digest[20]) {
    static EVP_MD_CTX *ctx = NULL;
    static EVP_MD *md = NULL;
    if (ctx == NULL) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
        md = EVP_MD_fetch(NULL, "SHA1", NULL);
#else
        md = (EVP_MD *)EVP_sha1();
#endif
        ctx = md ? EVP_MD_CTX_new() : NULL;
    }
    unsigned int size = 0;
    if (ctx == NULL || !EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, data, n) ||
        !EVP_DigestFinal_ex(ctx, digest, &size) || size != 20) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's SHA-1 failed");
        return -1;
    }
    return 0;
}
#else
static int sha1_digest(const unsigned char *data, size_t n, unsigned char digest[20]) {
    static PyObject *sha1 = NULL;
    if (sha1 == NULL) {
        PyObject *hashlib = PyImport_ImportModule("hashlib");
        if (hashlib == NULL) return -1;
        sha1 = PyObject_GetAttrString(hashlib, "sha1");
        Py_DECREF(hashlib);
        if (sha1 == NULL) return -1;
    }
    PyObject *hash = PyObject_CallFunction(sha1, "y#", (const char *)data, (Py_ssize_t)n);
    PyObject *bytes = hash ? PyObject_CallMethod(hash, "digest", NULL) : NULL;
    Py_XDECREF(hash);
    if (bytes == NULL) return -1;
    int ok = PyBytes_Check(bytes) && PyBytes_GET_SIZE(bytes) == 20;
    if (ok) memcpy(digest, PyBytes_AS_STRING(bytes), 20);
    Py_DECREF(bytes);
    if (!ok) PyErr_SetString(PyExc_RuntimeError, "hashlib.sha1 gave no 20-byte digest");
    return ok ? 0 : -1;
}
#endif

static const char BASE64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The headers an upgrade is decided by: the first value of each, trimmed (NULL when absent). */
enum { H_UPGRADE, H_CONNECTION, H_VERSION, H_KEY, H_COUNT };
static const char *const UPGRADE_HEADERS[H_COUNT] = {"upgrade", "connection", "sec-websocket-version",
                                                     "sec-websocket-key"};

/* One pass over the header block (four memmem passes showed in profiles). */
static void upgrade_headers(const char *headers, size_t size, const char *value[H_COUNT], size_t length[H_COUNT]) {
    const char *line = headers, *end = headers + size;
    for (int i = 0; i < H_COUNT; i++) value[i] = NULL;
    while (line < end) {
        const char *next = find_crlf(line, end);
        const char *stop = next ? next : end;
        const char *colon = memchr(line, ':', (size_t)(stop - line));
        if (colon != NULL) {
            size_t n = (size_t)(colon - line);
            for (int i = 0; i < H_COUNT; i++) {
                if (value[i] == NULL && strlen(UPGRADE_HEADERS[i]) == n && strncasecmp(line, UPGRADE_HEADERS[i], n) == 0) {
                    const char *v = colon + 1, *v_end = stop;
                    while (v < v_end && (*v == ' ' || *v == '\t')) v++;
                    while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
                    value[i] = v;
                    length[i] = (size_t)(v_end - v);
                    break;
                }
            }
        }
        line = next ? next + 2 : end;
    }
}

static int base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

static int has_token(const char *value, size_t size, const char *token) {
    size_t n = strlen(token);
    const char *p = value, *end = value + size;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end, *start = p;
        while (start < stop && (*start == ' ' || *start == '\t')) start++;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t')) stop--;
        if ((size_t)(stop - start) == n && strncasecmp(start, token, n) == 0) return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

static PyObject *refused(int status, const char *reason) { return Py_BuildValue("(is)", status, reason); }

/* A parameter's value as a window size (8-15; quotes allowed, RFC 7692 section 7.1.2), else -1. */
static int window_bits(const char *value, size_t n) {
    if (n >= 2 && value[0] == '"' && value[n - 1] == '"') value++, n -= 2;
    if (n == 1 && value[0] >= '8' && value[0] <= '9') return value[0] - '0';
    if (n == 2 && value[0] == '1' && value[1] >= '0' && value[1] <= '5') return 10 + value[1] - '0';
    return -1;
}

/* One extension offer (between commas): its server_max_window_bits (15 when not given) if it is a
 * valid permessage-deflate offer we accept, else 0; `asked` is set when the client named a window. */
static int deflate_offer(const char *p, const char *end, int *asked) {
    static const char name[] = "permessage-deflate";
    int seen[4] = {0}, bits = 15;
    *asked = 0;
    for (int first = 1; p < end; first = 0) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end, *start = p, *equals;
        while (start < stop && (*start == ' ' || *start == '\t')) start++;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t')) stop--;
        p = semi ? semi + 1 : end;
        if (first) {
            if ((size_t)(stop - start) != sizeof name - 1 || strncasecmp(start, name, sizeof name - 1) != 0) return 0;
            continue;
        }
        equals = memchr(start, '=', (size_t)(stop - start));
        const char *key_end = equals ? equals : stop, *value = equals ? equals + 1 : NULL;
        while (key_end > start && (key_end[-1] == ' ' || key_end[-1] == '\t')) key_end--;
        while (value && value < stop && (*value == ' ' || *value == '\t')) value++;
        size_t key = (size_t)(key_end - start), value_size = value ? (size_t)(stop - value) : 0;
        int which = key == 26 && strncasecmp(start, "server_no_context_takeover", 26) == 0   ? 0
                    : key == 26 && strncasecmp(start, "client_no_context_takeover", 26) == 0 ? 1
                    : key == 22 && strncasecmp(start, "server_max_window_bits", 22) == 0     ? 2
                    : key == 22 && strncasecmp(start, "client_max_window_bits", 22) == 0     ? 3
                                                                                            : -1;
        if (which < 0 || seen[which]++) return 0;  /* unknown or repeated: this offer is declined */
        if (which <= 1 && value) return 0;
        if (which == 2) {
            bits = value ? window_bits(value, value_size) : -1;
            if (bits < 0) return 0;
            *asked = 1;
        }
        if (which == 3 && value && window_bits(value, value_size) < 0) return 0;
    }
    return bits;
}

/* The first acceptable permessage-deflate offer in the request's Sec-WebSocket-Extensions headers:
 * its window bits, or 0; `asked` as for deflate_offer. */
static int deflate_negotiate(const char *headers, size_t size, int *asked) {
    const char *line = headers, *end = headers + size;
    while (line < end) {
        const char *next = find_crlf(line, end);
        const char *stop = next ? next : end;
        if ((size_t)(stop - line) > 25 && strncasecmp(line, "sec-websocket-extensions:", 25) == 0) {
            const char *p = line + 25;
            while (p < stop) {
                const char *comma = memchr(p, ',', (size_t)(stop - p));
                int bits = deflate_offer(p, comma ? comma : stop, asked);
                if (bits) return bits;
                p = comma ? comma + 1 : stop;
            }
        }
        line = next ? next + 2 : end;
    }
    return 0;
}

/* RFC 6455 section 4.2.1: the 101 response to a valid upgrade, else (status, reason). `version` is
 * the request line's "HTTP/d.d". With `compression`, a permessage-deflate offer is accepted and
 * `deflate` set to its window bits. */
static PyObject *upgrade_answer(const char *method, size_t method_size, const char *version, const char *headers,
                                size_t size, int compression, unsigned char *deflate) {
    *deflate = 0;
    if (method_size != 3 || memcmp(method, "GET", 3) != 0) return refused(405, "WebSocket upgrades use GET");
    if (version[5] == '0' || (version[5] == '1' && version[7] == '0'))
        return refused(400, "WebSocket upgrades need HTTP/1.1 or later");
    const char *value[H_COUNT];
    size_t n[H_COUNT];
    upgrade_headers(headers, size, value, n);
    if (value[H_UPGRADE] == NULL || n[H_UPGRADE] != 9 || strncasecmp(value[H_UPGRADE], "websocket", 9) != 0)
        return refused(426, "this path only speaks WebSocket (Upgrade: websocket)");
    if (value[H_CONNECTION] == NULL || !has_token(value[H_CONNECTION], n[H_CONNECTION], "upgrade"))
        return refused(400, "missing Connection: Upgrade");
    if (value[H_VERSION] == NULL || n[H_VERSION] != 2 || memcmp(value[H_VERSION], "13", 2) != 0)
        return refused(426, "unsupported Sec-WebSocket-Version (13 expected)");
    const char *key = value[H_KEY];
    int valid = key != NULL && n[H_KEY] == 24 && key[22] == '=' && key[23] == '=';
    for (size_t i = 0; valid && i < 22; i++) valid = base64_char(key[i]);
    if (!valid) return refused(400, "invalid Sec-WebSocket-Key");  /* 16 bytes, base64: 22 characters and "==" */
    unsigned char keyed[60], digest[21] = {0};
    memcpy(keyed, key, 24);
    memcpy(keyed + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    if (sha1_digest(keyed, sizeof keyed, digest) < 0) return NULL;
    char accept[29];
    for (int i = 0, o = 0; i < 21; i += 3, o += 4) {
        uint32_t t = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8) | digest[i + 2];
        accept[o] = BASE64[t >> 18];
        accept[o + 1] = BASE64[(t >> 12) & 63];
        accept[o + 2] = BASE64[(t >> 6) & 63];
        accept[o + 3] = BASE64[t & 63];
    }
    accept[27] = '=';
    static const char before[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Accept: ";
    char response[sizeof before - 1 + 28 + 160];
    size_t at = sizeof before - 1 + 28;
    memcpy(response, before, sizeof before - 1);
    memcpy(response + sizeof before - 1, accept, 28);
    int asked = 0, bits = compression ? deflate_negotiate(headers, size, &asked) : 0;
    if (bits) {
        /* No context takeover either way: what lets the wire keep no zlib state per connection. */
        at += (size_t)sprintf(response + at, "%s; server_no_context_takeover; client_no_context_takeover",
                              DEFLATE_ANSWER);
        if (asked) at += (size_t)sprintf(response + at, "; server_max_window_bits=%d", bits);
        *deflate = (unsigned char)bits;
    }
    memcpy(response + at, "\r\n\r\n", 4);
    return PyBytes_FromStringAndSize(response, (Py_ssize_t)(at + 4));
}

/* A head refused before routing: no method, and the (status, reason) to answer with. */
static int refused_parts(PyObject *parts[HEAD_PARTS], int status, const char *reason) {
    parts[HEAD_METHOD] = Py_NewRef(Py_None);
    parts[HEAD_PATH] = PyUnicode_FromStringAndSize("", 0);
    parts[HEAD_QUERY] = PyUnicode_FromStringAndSize("", 0);
    parts[HEAD_HEADERS] = PyBytes_FromStringAndSize("", 0);
    parts[HEAD_ANSWER] = refused(status, reason);
    for (int i = 0; i < HEAD_PARTS; i++)
        if (parts[i] == NULL) return -1;
    return 0;
}

/* Method, path and query (the target split at the first "?", latin-1), the raw header block, and
 * the answer to the head as an upgrade; a malformed request line is refused with 400. 0, or -1
 * with a Python error (the parts made so far are the caller's to release). */
static int request_parts(const char *head, size_t size, PyObject *parts[HEAD_PARTS], int compression,
                         unsigned char *deflate) {
    const char *eol = find_crlf(head, head + size);
    size_t line = eol ? (size_t)(eol - head) : size;
    const char *headers = eol ? eol + 2 : head + size;
    size_t headers_size = (size_t)(head + size - headers);
    const char *space1 = memchr(head, ' ', line);
    const char *space2 = space1 ? memchr(space1 + 1, ' ', (size_t)(head + line - space1 - 1)) : NULL;
    const char *version = space2 ? space2 + 1 : NULL;
    if (version == NULL || head + line - version != 8 || memcmp(version, "HTTP/", 5) != 0 ||
        !isdigit((unsigned char)version[5]) || version[6] != '.' || !isdigit((unsigned char)version[7]))
        return refused_parts(parts, 400, "malformed request line");
    const char *target = space1 + 1;
    size_t target_size = (size_t)(space2 - target);
    const char *mark = memchr(target, '?', target_size);
    size_t path_size = mark ? (size_t)(mark - target) : target_size;
    parts[HEAD_METHOD] = PyBytes_FromStringAndSize(head, space1 - head);
    parts[HEAD_PATH] = PyUnicode_DecodeLatin1(target, (Py_ssize_t)path_size, NULL);
    parts[HEAD_QUERY] = mark ? PyUnicode_DecodeLatin1(mark + 1, (Py_ssize_t)(target_size - path_size - 1), NULL)
                             : PyUnicode_FromStringAndSize("", 0);
    parts[HEAD_HEADERS] = PyBytes_FromStringAndSize(headers, (Py_ssize_t)headers_size);
    parts[HEAD_ANSWER] = upgrade_answer(head, (size_t)(space1 - head), version, headers, headers_size, compression,
                                        deflate);
    for (int i = 0; i < HEAD_PARTS; i++)
        if (parts[i] == NULL) return -1;
    return 0;
}

static PyObject *wire_request_head(PyObject *module, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"head", "compression", NULL};
    Py_buffer view;
    int compression = 0;
    unsigned char deflate;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|p", names, &view, &compression)) return NULL;
    PyObject *parts[HEAD_PARTS] = {NULL}, *result = NULL;
    if (request_parts(view.buf, (size_t)view.len, parts, compression, &deflate) == 0)
        result = PyTuple_Pack(HEAD_PARTS, parts[0], parts[1], parts[2], parts[3], parts[4]);
    for (int i = 0; i < HEAD_PARTS; i++) Py_XDECREF(parts[i]);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *wire_valid_close_code(PyObject *module, PyObject *code) {
    if (!PyLong_Check(code)) Py_RETURN_FALSE;
    long value = PyLong_AsLong(code);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();  /* too large for a C long: not a close code */
        Py_RETURN_FALSE;
    }
    return PyBool_FromLong(valid_close_code(value));
}

static PyMethodDef module_methods[] = {
    {"valid_close_code", wire_valid_close_code, METH_O,
     "valid_close_code(code) -> whether a close frame may carry it (the wire checks clients' with the same rule)."},
    {"request_head", (PyCFunction)(void (*)(void))wire_request_head, METH_VARARGS | METH_KEYWORDS,
     "request_head(head, compression=False) -> (method, path, query, raw_headers, answer), what the wire hands "
     "`on_head` for a request head without its final blank line. answer is the 101 response when the head is "
     "a valid WebSocket upgrade (accepting a permessage-deflate offer with compression), else (status, reason); "
     "method is None when the request line is malformed."},
    {"frame", wire_frame, METH_O,
     "frame(message) -> bytes: one final, unmasked frame (servers never mask): text for a str, binary "
     "for bytes-like. Encoded once, however many clients it goes to."},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wire", "The WebSocket wire in C.", -1, module_methods};

PyMODINIT_FUNC PyInit__wire(void) {
    if (PyType_Ready(&ConnType) < 0 || PyType_Ready(&WireType) < 0 || PyType_Ready(&EntryType) < 0) return NULL;
    str_busy = PyUnicode_InternFromString("busy");
    str_queued = PyUnicode_InternFromString("queued");
    zero = PyLong_FromLong(0);
    if (str_busy == NULL || str_queued == NULL || zero == NULL) return NULL;
#ifdef DIESEL_TLS
    tls_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dieselengine wire");
    if (tls_bio_method == NULL || !BIO_meth_set_write(tls_bio_method, tls_bio_write) ||
        !BIO_meth_set_read(tls_bio_method, tls_bio_read) || !BIO_meth_set_ctrl(tls_bio_method, tls_bio_ctrl) ||
        !BIO_meth_set_create(tls_bio_method, tls_bio_create))
        return PyErr_NoMemory();
#endif
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
#ifdef DIESEL_TLS
    int tls = 1;
#else
    int tls = 0;
#endif
#ifdef DIESEL_DEFLATE
    int deflate = 1;
#else
    int deflate = 0;
#endif
    if (PyModule_AddObjectRef(m, "TLS", tls ? Py_True : Py_False) < 0 ||
        PyModule_AddObjectRef(m, "DEFLATE", deflate ? Py_True : Py_False) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Wire", (PyObject *)&WireType) < 0 ||
        PyModule_AddObjectRef(m, "Conn", (PyObject *)&ConnType) < 0 ||
        PyModule_AddObjectRef(m, "Entry", (PyObject *)&EntryType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
