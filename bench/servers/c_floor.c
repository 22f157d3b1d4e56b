/* Reference, not a peer: what a transport in C would leave for the handler, in echo.
 *
 * A Python extension with its own epoll loop: accept, read, frame parsing and unmasking, and
 * write all in C, one read and at most one write per connection per wake-up. Each message is
 * either echoed in C (handler None) or handed to a Python callable whose return value is sent
 * back: a Python function, or a quickjs-ng function. This measures how far a C transport in
 * place of uvloop would get with a handler entered per message (bench/RESULTS.md).
 *
 * Short frames only (< 64 KiB), no fragments, no validation: not a server, a measurement.
 * Built by c_floor.py with the system compiler.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384

typedef struct {
    int fd, open;
    size_t len;
    unsigned char in[BUF];
} conn_t;

static void drop(conn_t *c) {
    close(c->fd);
    free(c);
}

/* Frames in c->in to replies in out; returns the reply bytes, or -1 on a Python error. */
static Py_ssize_t handle_frames(conn_t *c, PyObject *handler, unsigned char *out, int *closing) {
    size_t pos = 0, olen = 0;
    while (c->len - pos >= 6) {
        unsigned char *f = c->in + pos;
        size_t plen = f[1] & 0x7f, hdr = 6;
        if (plen == 126) {
            if (c->len - pos < 8) break;
            plen = ((size_t)f[2] << 8) | f[3];
            hdr = 8;
        }
        if (c->len - pos < hdr + plen) break;
        unsigned char *mask = f + hdr - 4, *p = f + hdr;
        for (size_t k = 0; k < plen; k++) p[k] ^= mask[k & 3];
        int opcode = f[0] & 0x0f;
        pos += hdr + plen;
        if (opcode == 8) {
            out[olen++] = 0x88;
            out[olen++] = 0;
            *closing = 1;
            break;
        }
        const char *reply = (const char *)p;
        Py_ssize_t rlen = (Py_ssize_t)plen;
        PyObject *result = NULL;
        if (handler != Py_None) {
            PyObject *message = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)plen, "strict");
            if (!message) return -1;
            result = PyObject_CallOneArg(handler, message);
            Py_DECREF(message);
            if (!result) return -1;
            reply = PyUnicode_AsUTF8AndSize(result, &rlen);
            if (!reply) {
                Py_DECREF(result);
                return -1;
            }
        }
        if (olen + 4 + (size_t)rlen <= BUF) {
            out[olen++] = 0x81;
            if (rlen < 126) {
                out[olen++] = (unsigned char)rlen;
            } else {
                out[olen++] = 126;
                out[olen++] = (unsigned char)(rlen >> 8);
                out[olen++] = (unsigned char)rlen;
            }
            memcpy(out + olen, reply, (size_t)rlen);
            olen += (size_t)rlen;
        }
        Py_XDECREF(result);
    }
    memmove(c->in, c->in + pos, c->len - pos);
    c->len -= pos;
    return (Py_ssize_t)olen;
}

/* serve(port, upgrade, handler): upgrade(head: bytes) -> the 101 response; runs until a signal. */
static PyObject *serve(PyObject *self, PyObject *args) {
    int port, one = 1;
    PyObject *upgrade, *handler;
    if (!PyArg_ParseTuple(args, "iOO", &port, &upgrade, &handler)) return NULL;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 4096))
        return PyErr_SetFromErrno(PyExc_OSError);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, events[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static unsigned char out[BUF];
    for (;;) {
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(ep, events, 256, 200);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals()) return NULL;
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            ssize_t got = read(c->fd, c->in + c->len, BUF - c->len);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                drop(c);
                continue;
            }
            c->len += (size_t)got;
            if (!c->open) {
                unsigned char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
                if (end == NULL) continue;
                PyObject *response = PyObject_CallFunction(upgrade, "y#", (const char *)c->in,
                                                           (Py_ssize_t)(end + 4 - c->in));
                if (!response) return NULL;
                if (write(c->fd, PyBytes_AS_STRING(response), (size_t)PyBytes_GET_SIZE(response)) < 0) {}
                Py_DECREF(response);
                c->open = 1;
                c->len = 0;
                continue;
            }
            int closing = 0;
            Py_ssize_t olen = handle_frames(c, handler, out, &closing);
            if (olen < 0) return NULL;
            if (olen > 0 && write(c->fd, out, (size_t)olen) < 0) {}
            if (closing) drop(c);
        }
    }
}

static PyMethodDef methods[] = {{"serve", serve, METH_VARARGS, "serve(port, upgrade, handler)"}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "c_floor", NULL, -1, methods};
PyMODINIT_FUNC PyInit_c_floor(void) { return PyModule_Create(&module); }
