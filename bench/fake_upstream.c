/* fake_upstream: a tiny, fast fake OpenAI / Anthropic upstream for Apex benchmarks.
 *
 * One epoll loop per thread (SO_REUSEPORT), HTTP/1.1 keep-alive, canned answers built once
 * at start-up. It must never be the bottleneck: a single thread serves well over 20k req/s
 * on one core, where a Python fake would saturate near the proxy under test.
 *
 *   POST /v1/chat/completions   OpenAI chat.completion (~600 B) or, when the body holds
 *                               "stream": true, an SSE stream: role chunk, N content chunks
 *                               GAP apart, finish chunk, usage chunk, [DONE]
 *   POST /v1/messages           Anthropic message (~500 B) or its SSE stream: message_start,
 *                               content_block_start, ping, N deltas GAP apart,
 *                               content_block_stop, message_delta (usage), message_stop
 *   GET  /health                {"status":"ok"}
 *   anything else               404
 *
 * Usage: fake_upstream [-p PORT] [-t THREADS] [-n CHUNKS] [-g GAP_US] [-d DELAY_US]
 *   DELAY_US delays the response headers (a model's "thinking" time); default 0.
 * Prints "listening PORT" on stdout once ready (PORT 0 picks a free one; single thread only).
 * Build: gcc -O2 -o fake_upstream fake_upstream.c -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define MAX_REQ (8 << 20)

enum proto { P_NONE = 0, P_OPENAI = 1, P_ANTHROPIC = 2 };

typedef struct buf { char *p; size_t len, cap; } buf;

typedef struct conn {
    int fd;
    buf in, out;
    int want_out;          /* EPOLLOUT registered */
    int proto;             /* stream in progress: P_OPENAI / P_ANTHROPIC, else P_NONE */
    int stream;            /* 1 = SSE answer pending/in progress, 0 = JSON answer pending */
    int step;              /* -1: headers not sent yet; k: next content chunk index */
    uint64_t due;          /* monotonic ns at which the next step is due */
    struct conn *prev, *next; /* in the thread's timed list while a response is pending */
    int in_list;
} conn;

typedef struct worker {
    int lfd, ep, tfd;
    conn head;             /* sentinel of the timed list */
    uint64_t armed;        /* deadline the timerfd is armed for, 0 = none */
} worker;

static int g_port = 0, g_threads = 1, g_chunks = 20;
static long g_gap_us = 0, g_delay_us = 0;

static const char *CONTENT_WORDS[] = {"Hello", " there", "!", " This", " is", " a", " canned",
    " answer", " from", " the", " Apex", " bench", " fake", " upstream", ",", " streamed",
    " one", " word", " at", " a", " time", "."};
#define NWORDS (sizeof CONTENT_WORDS / sizeof *CONTENT_WORDS)

/* Canned answers, built once. */
static buf oa_json, an_json, oa_head, an_head, oa_pre, an_pre, oa_tail, an_tail, health, notfound;
static buf *oa_chunk, *an_chunk; /* one pre-framed HTTP chunk per content piece */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) { perror(what); exit(1); }

static void buf_reserve(buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("realloc");
    b->cap = cap;
}
static void buf_add(buf *b, const char *s, size_t n) { buf_reserve(b, n); memcpy(b->p + b->len, s, n); b->len += n; }
static void buf_fmt(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_fmt(buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) die("vsnprintf");
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        buf_reserve(b, (size_t)n + 1);
    }
}
/* Append one HTTP/1.1 chunk framing `s`. */
static void buf_chunk(buf *b, const char *s) { buf_fmt(b, "%zx\r\n%s\r\n", strlen(s), s); }

static void json_response(buf *out, const char *body) {
    buf_fmt(out, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                 "x-request-id: fake-upstream\r\n\r\n%s", strlen(body), body);
}

static void build_answers(void) {
    char text[1024] = "";
    for (size_t i = 0; i < NWORDS; i++) strcat(text, CONTENT_WORDS[i]);
    strcat(text, " It exists so that benchmarks measure the proxy, not the model.");
    char body[4096];
    snprintf(body, sizeof body,
        "{\"id\":\"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012\",\"object\":\"chat.completion\","
        "\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"%s\",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":215,"
        "\"completion_tokens\":%d,\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":0,"
        "\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
        "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},"
        "\"service_tier\":\"default\",\"system_fingerprint\":\"fp_0ba0d124f1\"}",
        text, 36, 215 + 36);
    json_response(&oa_json, body);
    snprintf(body, sizeof body,
        "{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\","
        "\"model\":\"claude-3-5-sonnet-20241022\",\"content\":[{\"type\":\"text\",\"text\":\"%s\"}],"
        "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":215,"
        "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":36}}",
        text);
    json_response(&an_json, body);

    const char *sse_head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                           "transfer-encoding: chunked\r\nx-request-id: fake-upstream\r\n\r\n";
    buf_add(&oa_head, sse_head, strlen(sse_head));
    buf_add(&an_head, sse_head, strlen(sse_head));

    const char *oa_id = "\"id\":\"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\"";
    char ev[2048];
    snprintf(ev, sizeof ev, "data: {%s,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
             "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n", oa_id);
    buf_chunk(&oa_pre, ev);
    snprintf(ev, sizeof ev, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
             "\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
             "\"claude-3-5-sonnet-20241022\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
             "\"usage\":{\"input_tokens\":215,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,"
             "\"output_tokens\":1}}}\n\n");
    buf_chunk(&an_pre, ev);
    buf_chunk(&an_pre, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
                       "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    buf_chunk(&an_pre, "event: ping\ndata: {\"type\": \"ping\"}\n\n");

    oa_chunk = calloc((size_t)g_chunks, sizeof *oa_chunk);
    an_chunk = calloc((size_t)g_chunks, sizeof *an_chunk);
    for (int i = 0; i < g_chunks; i++) {
        const char *w = CONTENT_WORDS[(size_t)i % NWORDS];
        snprintf(ev, sizeof ev, "data: {%s,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},"
                 "\"logprobs\":null,\"finish_reason\":null}]}\n\n", oa_id, w);
        buf_chunk(&oa_chunk[i], ev);
        snprintf(ev, sizeof ev, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                 "\"delta\":{\"type\":\"text_delta\",\"text\":\"%s\"}}\n\n", w);
        buf_chunk(&an_chunk[i], ev);
    }
    snprintf(ev, sizeof ev, "data: {%s,\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
             "\"finish_reason\":\"stop\"}]}\n\n", oa_id);
    buf_chunk(&oa_tail, ev);
    snprintf(ev, sizeof ev, "data: {%s,\"choices\":[],\"usage\":{\"prompt_tokens\":215,\"completion_tokens\":%d,"
             "\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":0},"
             "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n", oa_id, g_chunks, 215 + g_chunks);
    buf_chunk(&oa_tail, ev);
    buf_chunk(&oa_tail, "data: [DONE]\n\n");
    buf_add(&oa_tail, "0\r\n\r\n", 5);
    buf_chunk(&an_tail, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    snprintf(ev, sizeof ev, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
             "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":%d}}\n\n", g_chunks);
    buf_chunk(&an_tail, ev);
    buf_chunk(&an_tail, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    buf_add(&an_tail, "0\r\n\r\n", 5);

    json_response(&health, "{\"status\":\"ok\"}");
    const char *nf = "{\"error\":{\"message\":\"not found\",\"type\":\"not_found_error\"}}";
    buf_fmt(&notfound, "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n\r\n%s",
            strlen(nf), nf);
}

static void conn_close(worker *w, conn *c) {
    if (c->in_list) { c->prev->next = c->next; c->next->prev = c->prev; c->in_list = 0; }
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

/* Queue bytes for the client: write straight away when nothing is pending. Returns -1 on a dead socket. */
static int conn_send(worker *w, conn *c, const char *p, size_t n) {
    if (c->out.len == 0) {
        while (n > 0) {
            ssize_t k = write(c->fd, p, n);
            if (k > 0) { p += k; n -= (size_t)k; continue; }
            if (k < 0 && errno == EINTR) continue;
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            return -1;
        }
        if (n == 0) return 0;
    }
    buf_add(&c->out, p, n);
    if (!c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 1;
    }
    return 0;
}

static int conn_flush(worker *w, conn *c) {
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t k = write(c->fd, c->out.p + off, c->out.len - off);
        if (k > 0) { off += (size_t)k; continue; }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        return -1;
    }
    memmove(c->out.p, c->out.p + off, c->out.len - off);
    c->out.len -= off;
    if (c->out.len == 0 && c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
    return 0;
}

static void timed_add(worker *w, conn *c, uint64_t due) {
    c->due = due;
    if (!c->in_list) {
        c->next = &w->head; c->prev = w->head.prev;
        w->head.prev->next = c; w->head.prev = c;
        c->in_list = 1;
    }
}
static void timed_del(conn *c) {
    if (c->in_list) { c->prev->next = c->next; c->next->prev = c->prev; c->in_list = 0; }
}

static int pending(conn *c) { return c->proto != P_NONE; }

/* Advance a pending response as far as the clock allows. Returns -1 on a dead socket. */
static int advance(worker *w, conn *c, uint64_t now) {
    while (pending(c) && c->due <= now) {
        int oa = c->proto == P_OPENAI;
        if (!c->stream) {
            buf *b = oa ? &oa_json : &an_json;
            c->proto = P_NONE;
            timed_del(c);
            return conn_send(w, c, b->p, b->len);
        }
        if (c->step < 0) {
            buf *h = oa ? &oa_head : &an_head, *pre = oa ? &oa_pre : &an_pre;
            if (conn_send(w, c, h->p, h->len) < 0 || conn_send(w, c, pre->p, pre->len) < 0) return -1;
            c->step = 0;
            continue; /* first content chunk goes out with the headers */
        }
        buf *ch = oa ? &oa_chunk[c->step] : &an_chunk[c->step];
        if (conn_send(w, c, ch->p, ch->len) < 0) return -1;
        c->step++;
        if (c->step >= g_chunks) {
            buf *t = oa ? &oa_tail : &an_tail;
            c->proto = P_NONE;
            timed_del(c);
            return conn_send(w, c, t->p, t->len);
        }
        c->due += (uint64_t)g_gap_us * 1000u;
        if (g_gap_us > 0) timed_add(w, c, c->due);
    }
    return 0;
}

static int has_stream_true(const char *b, size_t n) {
    const char *end = b + n, *p = b;
    while ((p = memmem(p, (size_t)(end - p), "\"stream\"", 8)) != NULL) {
        p += 8;
        while (p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (end - p >= 4 && memcmp(p, "true", 4) == 0) return 1;
    }
    return 0;
}

/* Parse and answer complete requests in c->in. Returns -1 to close. */
static int handle_input(worker *w, conn *c) {
    size_t off = 0;
    while (!pending(c)) {
        char *start = c->in.p + off;
        size_t avail = c->in.len - off;
        char *hend = memmem(start, avail, "\r\n\r\n", 4);
        if (!hend) { if (avail > 65536) return -1; break; }
        size_t hlen = (size_t)(hend - start) + 4;
        long clen = 0;
        int chunked = 0;
        for (char *line = memchr(start, '\n', hlen); line && line < hend; line = memchr(line + 1, '\n', (size_t)(hend - line))) {
            char *h = line + 1;
            if (strncasecmp(h, "content-length:", 15) == 0) clen = strtol(h + 15, NULL, 10);
            else if (strncasecmp(h, "transfer-encoding:", 18) == 0 && memmem(h, (size_t)(hend - h), "chunked", 7)) chunked = 1;
        }
        size_t total;
        if (chunked) {
            char *z = memmem(start + hlen, avail - hlen, "0\r\n\r\n", 5);
            if (!z) { if (avail > MAX_REQ) return -1; break; }
            total = (size_t)(z - start) + 5;
        } else {
            if (clen < 0 || clen > MAX_REQ) return -1;
            total = hlen + (size_t)clen;
            if (avail < total) break;
        }
        int post = strncmp(start, "POST ", 5) == 0;
        char *path = memchr(start, ' ', hlen);
        path = path ? path + 1 : start;
        int proto = P_NONE;
        if (post && strncmp(path, "/v1/chat/completions", 20) == 0 && (path[20] == ' ' || path[20] == '?')) proto = P_OPENAI;
        else if (post && strncmp(path, "/v1/messages", 12) == 0 && (path[12] == ' ' || path[12] == '?')) proto = P_ANTHROPIC;
        if (proto != P_NONE) {
            c->proto = proto;
            c->stream = has_stream_true(start + hlen, total - hlen);
            c->step = -1;
            uint64_t now = now_ns();
            c->due = now + (uint64_t)g_delay_us * 1000u;
            if (advance(w, c, now) < 0) return -1;
            if (pending(c)) timed_add(w, c, c->due);
        } else if (strncmp(path, "/health", 7) == 0) {
            if (conn_send(w, c, health.p, health.len) < 0) return -1;
        } else {
            if (conn_send(w, c, notfound.p, notfound.len) < 0) return -1;
        }
        off += total;
    }
    memmove(c->in.p, c->in.p + off, c->in.len - off);
    c->in.len -= off;
    return 0;
}

static void arm_timer(worker *w) {
    uint64_t earliest = 0;
    for (conn *c = w->head.next; c != &w->head; c = c->next)
        if (!earliest || c->due < earliest) earliest = c->due;
    if (earliest == w->armed) return;
    struct itimerspec its = {0};
    if (earliest) {
        its.it_value.tv_sec = (time_t)(earliest / 1000000000ull);
        its.it_value.tv_nsec = (long)(earliest % 1000000000ull);
    }
    timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    w->armed = earliest;
}

static int listen_socket(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    return fd;
}

static void *run(void *arg) {
    worker *w = arg;
    w->ep = epoll_create1(0);
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    w->head.next = w->head.prev = &w->head;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev);
    ev.data.ptr = &w->tfd;
    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->tfd, &ev);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, -1);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                for (;;) {
                    int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (evs[i].data.ptr == &w->tfd) {
                uint64_t x;
                ssize_t r = read(w->tfd, &x, sizeof x);
                (void)r;
                w->armed = 0;
                continue;
            }
            conn *c = evs[i].data.ptr;
            if ((evs[i].events & EPOLLOUT) && conn_flush(w, c) < 0) { conn_close(w, c); continue; }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                int dead = 0;
                for (;;) {
                    buf_reserve(&c->in, 16384);
                    ssize_t k = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
                    if (k > 0) { c->in.len += (size_t)k; continue; }
                    if (k < 0 && errno == EINTR) continue;
                    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                    dead = 1; /* EOF or error */
                    break;
                }
                if (dead || handle_input(w, c) < 0) { conn_close(w, c); continue; }
            }
        }
        /* Due streams: send what is due, then parse any pipelined request behind them. */
        uint64_t now = now_ns();
        for (conn *c = w->head.next, *nx; c != &w->head; c = nx) {
            nx = c->next;
            if (c->due > now) continue;
            if (advance(w, c, now) < 0 || (!pending(c) && handle_input(w, c) < 0)) conn_close(w, c);
        }
        arm_timer(w);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "p:t:n:g:d:")) != -1) {
        switch (opt) {
        case 'p': g_port = atoi(optarg); break;
        case 't': g_threads = atoi(optarg); break;
        case 'n': g_chunks = atoi(optarg); break;
        case 'g': g_gap_us = atol(optarg); break;
        case 'd': g_delay_us = atol(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-p PORT] [-t THREADS] [-n CHUNKS] [-g GAP_US] [-d DELAY_US]\n", argv[0]);
            return 2;
        }
    }
    if (g_chunks < 1) g_chunks = 1;
    if (g_threads < 1) g_threads = 1;
    signal(SIGPIPE, SIG_IGN);
    build_answers();
    worker *ws = calloc((size_t)g_threads, sizeof *ws);
    ws[0].lfd = listen_socket(g_port);
    if (g_port == 0) {
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        getsockname(ws[0].lfd, (struct sockaddr *)&a, &al);
        g_port = ntohs(a.sin_port);
        g_threads = 1;
    }
    for (int i = 1; i < g_threads; i++) ws[i].lfd = listen_socket(g_port);
    printf("listening %d\n", g_port);
    fflush(stdout);
    pthread_t t;
    for (int i = 1; i < g_threads; i++) pthread_create(&t, NULL, run, &ws[i]);
    run(&ws[0]);
    return 0;
}
