/*
 * pggss-proxy: a TCP proxy that terminates PostgreSQL GSSAPI encryption.
 *
 * Clients connect with gssencmode=require (or prefer). The proxy accepts
 * the encryption with the pggssenc acceptor, checks that the StartupMessage
 * names the authenticated user, and forwards the decrypted protocol to an
 * upstream PostgreSQL server over a Unix socket or TCP. One thread runs a
 * poll(2) loop over non-blocking sockets, and each connection is a session
 * (session.c). See README.md for the options and the log format.
 */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy.h"

/* Connections taken from the listen queue per loop iteration, so that a burst does not delay running sessions. */
#define ACCEPT_BATCH 64

/* Pause of the listener after accept(2) ran out of file descriptors. */
#define ACCEPT_BACKOFF_MS 1000

static volatile sig_atomic_t stop_signal;

static void handle_stop_signal(int signal_number)
{
    stop_signal = signal_number;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pggss-proxy --listen ADDR:PORT --upstream unix:/path/.s.PGSQL.PORT|tcp:HOST:PORT [options]\n"
            "\n"
            "Accepts GSSAPI-encrypted PostgreSQL connections and forwards the decrypted\n"
            "protocol to an upstream server.\n"
            "\n"
            "  --listen ADDR:PORT          address to listen on, such as 127.0.0.1:6432 or [::1]:6432;\n"
            "                              port 0 picks a free port (logged at start)\n"
            "  --upstream SPEC             upstream server: unix:/path/.s.PGSQL.5432 or tcp:HOST:PORT\n"
            "  --keytab PATH               keytab to accept with (default: KRB5_KTNAME or the system keytab)\n"
            "  --service NAME@HOST         accept only this host-based service, such as postgres@db.example.com\n"
            "                              (default: any key in the keytab)\n"
            "  --realm REALM               accept only client principals of this realm (default: any)\n"
            "  --require-gss               reject clients that do not request GSSAPI encryption\n"
            "  --handshake-timeout SECONDS close clients whose handshake and StartupMessage have not\n"
            "                              completed after this many seconds, and upstream connections\n"
            "                              not established by then (default %d)\n"
            "  --max-clients N             close new connections while N are open (default %d)\n"
            "  --help                      show this help\n",
            DEFAULT_HANDSHAKE_TIMEOUT_S, DEFAULT_MAX_CLIENTS);
}

/* Splits "HOST:PORT" or "[HOST]:PORT" into its parts. Returns -1 when malformed. */
static int split_host_port(const char *text, char *host, size_t host_size, char *port, size_t port_size)
{
    const char *colon;
    const char *host_start = text;
    size_t host_length;
    if (text[0] == '[') {
        const char *close_bracket = strchr(text, ']');
        if (close_bracket == NULL || close_bracket[1] != ':')
            return -1;
        host_start = text + 1;
        host_length = (size_t)(close_bracket - host_start);
        colon = close_bracket + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return -1;
        host_length = (size_t)(colon - text);
    }
    if (host_length == 0 || host_length >= host_size || colon[1] == 0 || strlen(colon + 1) >= port_size)
        return -1;
    memcpy(host, host_start, host_length);
    host[host_length] = 0;
    snprintf(port, port_size, "%s", colon + 1);
    return 0;
}

/* Resolves "HOST:PORT" to its first address. Returns 0, or -1 after printing an error. */
static int resolve(const char *option, const char *text, int flags, struct sockaddr_storage *addr, socklen_t *addr_len)
{
    char host[256];
    char port[32];
    if (split_host_port(text, host, sizeof(host), port, sizeof(port)) != 0) {
        fprintf(stderr, "pggss-proxy: invalid %s \"%s\"; expected HOST:PORT, such as 127.0.0.1:6432 or [::1]:6432\n",
                option, text);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = flags};
    struct addrinfo *result = NULL;
    int rc = getaddrinfo(host, port, &hints, &result);
    if (rc != 0) {
        fprintf(stderr, "pggss-proxy: could not resolve %s \"%s\": %s\n", option, text, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, result->ai_addr, result->ai_addrlen);
    *addr_len = result->ai_addrlen;
    freeaddrinfo(result);
    return 0;
}

static int parse_upstream(const char *text, struct proxy_config *config)
{
    snprintf(config->upstream_text, sizeof(config->upstream_text), "%s", text);
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        struct sockaddr_un *un = (struct sockaddr_un *)&config->upstream_addr;
        if (path[0] == 0 || strlen(path) >= sizeof(un->sun_path)) {
            fprintf(stderr, "pggss-proxy: invalid --upstream \"%s\": the socket path is empty or longer than %zu bytes\n",
                    text, sizeof(un->sun_path) - 1);
            return -1;
        }
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof(un->sun_path), "%s", path);
        config->upstream_addr_len = sizeof(*un);
        return 0;
    }
    if (strncmp(text, "tcp:", 4) == 0)
        return resolve("--upstream", text + 4, 0, &config->upstream_addr, &config->upstream_addr_len);
    fprintf(stderr, "pggss-proxy: invalid --upstream \"%s\"; expected unix:/path/.s.PGSQL.PORT or tcp:HOST:PORT\n", text);
    return -1;
}

static int parse_positive(const char *option, const char *text, long max, int *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != 0 || value < 1 || value > max) {
        fprintf(stderr, "pggss-proxy: invalid %s \"%s\"; expected a whole number from 1 to %ld\n", option, text, max);
        return -1;
    }
    *out = (int)value;
    return 0;
}

static int open_listener(const char *text, char *bound, size_t bound_size)
{
    struct sockaddr_storage addr;
    socklen_t addr_len;
    if (resolve("--listen", text, AI_PASSIVE, &addr, &addr_len) != 0)
        return -1;

    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "pggss-proxy: could not create the listening socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, addr_len) != 0 || listen(fd, SOMAXCONN) != 0) {
        fprintf(stderr, "pggss-proxy: could not listen on %s: %s\n", text, strerror(errno));
        close(fd);
        return -1;
    }
    addr_len = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &addr_len);
    format_address((struct sockaddr *)&addr, addr_len, bound, bound_size);
    return fd;
}

/*
 * Raises the soft limit on open files to what --max-clients needs: two
 * sockets per client, plus the listener and standard streams.
 */
static int ensure_file_limit(int max_clients)
{
    struct rlimit limit;
    rlim_t needed = (rlim_t)max_clients * 2 + 16;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 0;
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
        if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed) {
            fprintf(stderr,
                    "pggss-proxy: --max-clients %d needs %llu open files, but the hard limit is %llu; "
                    "lower --max-clients or raise the limit (ulimit -Hn)\n",
                    max_clients, (unsigned long long)needed, (unsigned long long)limit.rlim_max);
            return -1;
        }
        limit.rlim_cur = needed;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
            fprintf(stderr, "pggss-proxy: could not raise the open file limit to %llu: %s\n",
                    (unsigned long long)needed, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/*
 * Checks that a keytab given as a path or FILE:path is readable, so that a
 * wrong path fails at start instead of at every client's handshake. Other
 * keytab types (such as MEMORY:) are left to GSSAPI.
 */
static int check_keytab(const char *keytab)
{
    const char *path = keytab;
    if (strncmp(path, "FILE:", 5) == 0)
        path += 5;
    else if (strchr(path, ':') != NULL && path[0] != '/')
        return 0;
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "pggss-proxy: cannot read --keytab \"%s\": %s\n", keytab, strerror(errno));
        return -1;
    }
    return 0;
}

static int parse_options(int argc, char **argv, struct proxy_config *config, const char **listen_text)
{
    enum { OPT_LISTEN = 1, OPT_UPSTREAM, OPT_KEYTAB, OPT_SERVICE, OPT_REALM, OPT_REQUIRE_GSS, OPT_TIMEOUT, OPT_MAX, OPT_HELP };
    static const struct option options[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"upstream", required_argument, NULL, OPT_UPSTREAM},
        {"keytab", required_argument, NULL, OPT_KEYTAB},
        {"service", required_argument, NULL, OPT_SERVICE},
        {"realm", required_argument, NULL, OPT_REALM},
        {"require-gss", no_argument, NULL, OPT_REQUIRE_GSS},
        {"handshake-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"max-clients", required_argument, NULL, OPT_MAX},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *upstream = NULL;
    int seconds = DEFAULT_HANDSHAKE_TIMEOUT_S;
    config->max_clients = DEFAULT_MAX_CLIENTS;

    int option;
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case OPT_LISTEN:
            *listen_text = optarg;
            break;
        case OPT_UPSTREAM:
            upstream = optarg;
            break;
        case OPT_KEYTAB:
            config->keytab = optarg;
            break;
        case OPT_SERVICE:
            if (strchr(optarg, '@') == NULL || optarg[0] == '@' || strchr(optarg, '@')[1] == 0) {
                fprintf(stderr, "pggss-proxy: invalid --service \"%s\"; expected NAME@HOST, such as postgres@db.example.com\n",
                        optarg);
                return -1;
            }
            config->service = optarg;
            break;
        case OPT_REALM:
            config->realm = optarg;
            break;
        case OPT_REQUIRE_GSS:
            config->require_gss = true;
            break;
        case OPT_TIMEOUT:
            if (parse_positive("--handshake-timeout", optarg, 3600, &seconds) != 0)
                return -1;
            break;
        case OPT_MAX:
            if (parse_positive("--max-clients", optarg, 100000, &config->max_clients) != 0)
                return -1;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pggss-proxy: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    if (*listen_text == NULL || upstream == NULL) {
        fprintf(stderr, "pggss-proxy: --listen and --upstream are required\n");
        usage(stderr);
        return -1;
    }
    config->handshake_timeout_ms = seconds * 1000;
    if (config->keytab != NULL && check_keytab(config->keytab) != 0)
        return -1;
    return parse_upstream(upstream, config);
}

struct proxy {
    struct proxy_config config;
    int listen_fd;
    /* Time until which the listener is not polled after EMFILE, or 0. */
    int64_t listen_paused_until;
    struct session **sessions;
    int session_count;
    /* poll(2) entries: the listener, then two per session (client, upstream). */
    struct pollfd *fds;
    uint64_t rejected_over_limit;
};

static void accept_clients(struct proxy *proxy, int64_t now)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof(addr);
        int fd = accept4(proxy->listen_fd, (struct sockaddr *)&addr, &addr_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_line("accept failed: %s; not accepting for %d ms", strerror(errno), ACCEPT_BACKOFF_MS);
                proxy->listen_paused_until = now + ACCEPT_BACKOFF_MS;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
                log_line("accept failed: %s", strerror(errno));
            }
            return;
        }

        if (proxy->session_count >= proxy->config.max_clients) {
            char address[80];
            format_address((struct sockaddr *)&addr, addr_len, address, sizeof(address));
            proxy->rejected_over_limit++;
            log_line("connection client=%s principal=- user=- database=- mode=- from_client=0 to_client=0 "
                     "duration_ms=0 closed_by=proxy outcome=rejected: too many clients (--max-clients %d)",
                     address, proxy->config.max_clients);
            close(fd);
            continue;
        }
        struct session *session = session_new(&proxy->config, fd, (struct sockaddr *)&addr, addr_len, now);
        if (session != NULL)
            proxy->sessions[proxy->session_count++] = session;
    }
}

/* Fills the poll set and returns the poll timeout in milliseconds (-1 for none). */
static int prepare_poll(struct proxy *proxy, int64_t now)
{
    int64_t next_deadline = 0;
    bool any_ready = false;

    proxy->fds[0].fd = proxy->listen_paused_until > now ? -1 : proxy->listen_fd;
    proxy->fds[0].events = POLLIN;
    if (proxy->listen_paused_until > now)
        next_deadline = proxy->listen_paused_until;

    for (int i = 0; i < proxy->session_count; i++) {
        struct pollfd *client = &proxy->fds[1 + 2 * i];
        struct pollfd *upstream = &proxy->fds[2 + 2 * i];
        bool ready;
        session_poll_events(proxy->sessions[i], &client->fd, &client->events, &upstream->fd, &upstream->events,
                            &ready);
        /*
         * poll(2) skips a negative fd. A socket with no events wanted is left
         * out too, because poll(2) would report its hang-up on every call.
         */
        if (client->events == 0)
            client->fd = -1;
        if (upstream->events == 0)
            upstream->fd = -1;
        any_ready = any_ready || ready;
        int64_t deadline = session_deadline(proxy->sessions[i]);
        if (deadline != 0 && (next_deadline == 0 || deadline < next_deadline))
            next_deadline = deadline;
    }

    if (any_ready)
        return 0;
    if (next_deadline == 0)
        return -1;
    int64_t wait = next_deadline - now;
    if (wait < 0)
        return 0;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

/* Runs sessions with events or pending work, checks deadlines and drops finished sessions. */
static void run_sessions(struct proxy *proxy, int64_t now)
{
    int kept = 0;
    for (int i = 0; i < proxy->session_count; i++) {
        struct session *session = proxy->sessions[i];
        short client_revents = proxy->fds[1 + 2 * i].fd >= 0 ? proxy->fds[1 + 2 * i].revents : 0;
        short upstream_revents = proxy->fds[2 + 2 * i].fd >= 0 ? proxy->fds[2 + 2 * i].revents : 0;
        int client_fd;
        int upstream_fd;
        short client_events;
        short upstream_events;
        bool ready;
        session_poll_events(session, &client_fd, &client_events, &upstream_fd, &upstream_events, &ready);

        if (ready || client_revents != 0 || upstream_revents != 0)
            session_run(session);
        session_check_deadline(session, now);

        if (session_finished(session)) {
            session_free(session);
        } else {
            proxy->sessions[kept++] = session;
        }
    }
    proxy->session_count = kept;
}

static int run(struct proxy *proxy)
{
    sigset_t wait_mask;
    sigprocmask(SIG_SETMASK, NULL, &wait_mask);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);

    while (!stop_signal) {
        int64_t now = monotonic_ms();
        int timeout_ms = prepare_poll(proxy, now);
        struct timespec timeout = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000};

        /* SIGINT and SIGTERM are blocked except inside ppoll, so a signal cannot slip in between the check and the wait. */
        int count = ppoll(proxy->fds, (nfds_t)(1 + 2 * proxy->session_count), timeout_ms < 0 ? NULL : &timeout,
                          &wait_mask);
        if (count < 0 && errno != EINTR) {
            log_line("poll failed: %s", strerror(errno));
            return -1;
        }
        if (count < 0) {
            for (int i = 0; i < 1 + 2 * proxy->session_count; i++)
                proxy->fds[i].revents = 0;
        }

        now = monotonic_ms();
        if (proxy->fds[0].fd >= 0 && (proxy->fds[0].revents & POLLIN))
            accept_clients(proxy, now);
        run_sessions(proxy, now);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct proxy proxy;
    memset(&proxy, 0, sizeof(proxy));
    const char *listen_text = NULL;
    if (parse_options(argc, argv, &proxy.config, &listen_text) != 0)
        return 2;
    if (ensure_file_limit(proxy.config.max_clients) != 0)
        return 1;

    proxy.sessions = calloc((size_t)proxy.config.max_clients, sizeof(*proxy.sessions));
    proxy.fds = calloc((size_t)proxy.config.max_clients * 2 + 1, sizeof(*proxy.fds));
    if (proxy.sessions == NULL || proxy.fds == NULL) {
        fprintf(stderr, "pggss-proxy: out of memory for %d clients\n", proxy.config.max_clients);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop_signals, NULL);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = handle_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    char bound[128];
    proxy.listen_fd = open_listener(listen_text, bound, sizeof(bound));
    if (proxy.listen_fd < 0)
        return 1;
    log_line("listening on %s, upstream %s, GSSAPI encryption %s, handshake timeout %d s, max clients %d, "
             "pggssenc %s",
             bound, proxy.config.upstream_text, proxy.config.require_gss ? "required" : "optional",
             proxy.config.handshake_timeout_ms / 1000, proxy.config.max_clients, pggss_version());

    int rc = run(&proxy);

    if (stop_signal)
        log_line("received %s; closing open connections: %d", stop_signal == SIGINT ? "SIGINT" : "SIGTERM",
                 proxy.session_count);
    for (int i = 0; i < proxy.session_count; i++)
        session_free(proxy.sessions[i]);
    close(proxy.listen_fd);
    log_line("stopped; connections rejected over --max-clients: %llu", (unsigned long long)proxy.rejected_over_limit);
    free(proxy.sessions);
    free(proxy.fds);
    return rc == 0 ? 0 : 1;
}
