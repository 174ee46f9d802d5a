/*
 * Shared code of the hostile-peer tests: a case runner, checks, and fake
 * peers built on real GSSAPI contexts (MIT krb5), so that the tokens a fake
 * peer sends are valid wherever an attack needs them to be.
 *
 * The library under test sits on one end of a socketpair. A fake peer runs
 * on the other end, in a thread of its own when the library end blocks.
 * Everything reads the fixture's environment: KRB5CCNAME (the client's
 * ticket) and PGGSS_SERVER_KEYTAB (the keys of postgres/localhost).
 */

#ifndef HOSTILE_COMMON_H
#define HOSTILE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gssapi/gssapi.h>
#include <pthread.h>

#include "pggssenc.h"

/* --- checks ------------------------------------------------------------ */

/* Number of failed checks in the current case. */
extern int check_failures;

void fail_check(const char *file, int line, const char *format, ...) __attribute__((format(printf, 3, 4)));
/* Ends the current case as failed: for preconditions a case cannot go on without. */
void abort_case(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#define EXPECT(cond, ...)                                   \
    do {                                                    \
        if (!(cond))                                        \
            fail_check(__FILE__, __LINE__, __VA_ARGS__);    \
    } while (0)
#define REQUIRE(cond, ...)                                  \
    do {                                                    \
        if (!(cond))                                        \
            abort_case(__FILE__, __LINE__, __VA_ARGS__);    \
    } while (0)
#define EXPECT_INT(actual, expected)                                                              \
    do {                                                                                          \
        long long actual_value_ = (long long)(actual), expected_value_ = (long long)(expected);   \
        EXPECT(actual_value_ == expected_value_, "%s is %lld, expected %lld", #actual, actual_value_, \
               expected_value_);                                                                  \
    } while (0)
#define EXPECT_CONTAINS(text, fragment)                                                          \
    EXPECT(strstr((text), (fragment)) != NULL, "%s is \"%s\", expected it to contain \"%s\"", #text, \
           (text), (fragment))
#define EXPECT_LACKS(text, fragment)                                                                \
    EXPECT(strstr((text), (fragment)) == NULL, "%s is \"%s\", expected it not to contain \"%s\"", #text, \
           (text), (fragment))

/* --- cases ------------------------------------------------------------- */

typedef void (*case_fn)(void);

struct test_case {
    const char *name;
    case_fn run;
};

extern const struct test_case client_cases[];
extern const size_t client_case_count;
extern const struct test_case acceptor_cases[];
extern const size_t acceptor_case_count;

/* --- byte buffers and sockets ----------------------------------------- */

struct bytes {
    uint8_t *data;
    size_t len;
    size_t cap;
};

void bytes_append(struct bytes *b, const void *data, size_t len);
void bytes_append_u32(struct bytes *b, uint32_t value);
/* Appends `token` as one packet: its 4-byte big-endian length, then the token. */
void bytes_append_frame(struct bytes *b, const void *token, size_t len);
void bytes_free(struct bytes *b);

/* Creates a connected AF_UNIX stream socketpair; ends the case on failure. */
void make_socketpair(int fds[2]);
void set_nonblocking(int fd, bool on);
/* Reads exactly `len` bytes; returns false on EOF or error. */
bool read_exact(int fd, void *buf, size_t len);
/* Writes all bytes in one write(2) where the socket allows, else in a loop. */
bool write_all(int fd, const void *buf, size_t len);
/* Writes one byte per send(2), pausing `pause_us` microseconds between them. */
bool write_bytewise(int fd, const void *buf, size_t len, unsigned pause_us);
/* Reads one packet: a length word of at most `max_token` and the token. */
bool read_frame(int fd, struct bytes *token, size_t max_token);
/* Returns the number of bytes waiting on `fd` without blocking; -1 on error, -2 at EOF. */
long pending_bytes(int fd);

/* --- GSSAPI ------------------------------------------------------------ */

/* Renders a GSSAPI status pair as "major text: minor text". */
void gss_status_text(OM_uint32 major, OM_uint32 minor, char *out, size_t len);
/* Acceptor credentials from $PGGSS_SERVER_KEYTAB; ends the case on failure. */
gss_cred_id_t acceptor_credential(void);
/* Imports "service@localhost" as a host-based service name. */
gss_name_t service_name(const char *service);
/* Flags that libpq requests: mutual, replay, sequence, confidentiality, integrity. */
#define CLIENT_FLAGS \
    (GSS_C_MUTUAL_FLAG | GSS_C_REPLAY_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG)

/*
 * Wraps `len` bytes with the given confidentiality request and appends the
 * token as one packet to `out`. Returns false and fills `error` on failure.
 */
bool wrap_frame(gss_ctx_id_t ctx, int conf_req, const void *data, size_t len, struct bytes *out, char *error,
                size_t error_len);
/* Unwraps one token; fails unless the token had confidentiality. */
bool unwrap_token(gss_ctx_id_t ctx, const struct bytes *token, struct bytes *out, char *error, size_t error_len);

/*
 * A self-contained context pair in this process: an initiator for
 * postgres@localhost from the default ticket cache and an acceptor from
 * $PGGSS_SERVER_KEYTAB, established with each other. Its tokens belong to
 * neither side of the connection under test.
 */
struct context_pair {
    gss_ctx_id_t initiator;
    gss_ctx_id_t acceptor;
    struct bytes first_token;   /* the initiator's AP-REQ */
    struct bytes reply_token;   /* the acceptor's AP-REP */
};
bool establish_pair(struct context_pair *pair, char *error, size_t error_len);
void release_pair(struct context_pair *pair);
void delete_context(gss_ctx_id_t *ctx);

/* --- fake peers -------------------------------------------------------- */

struct peer;
typedef void (*peer_fn)(struct peer *p);

/* A fake peer running in its own thread on one end of a socketpair. */
struct peer {
    int fd;
    peer_fn run;
    long param;              /* a number the case passes to its peer */
    const void *data;        /* bytes the case passes to its peer */
    size_t data_len;
    gss_ctx_id_t ctx;        /* the peer's established context, if any */
    struct bytes received;   /* what the peer read, where a case keeps it */
    char error[1024];        /* the first failure inside the peer */
    pthread_t thread;
};

void peer_start(struct peer *p);
/* Joins the peer thread and reports its failure, if any, as a failed check. */
void peer_finish(struct peer *p);
void peer_fail(struct peer *p, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Fake server: reads and checks the 8-byte GSSENCRequest. */
bool server_read_request(struct peer *p);
/*
 * Fake server: reads GSSENCRequest, responds 'G', accepts the client's token
 * and sends the reply, writing one byte per send(2) when `bytewise`.
 * Leaves the established context in p->ctx.
 */
bool server_handshake(struct peer *p, bool bytewise);
/* As server_handshake, with `trailer` sent in the same write as the reply. */
bool server_handshake_with_trailer(struct peer *p, bool bytewise, const void *trailer, size_t trailer_len);
/*
 * Fake client: sends GSSENCRequest, expects 'G', and runs the handshake
 * for `service`@localhost. Leaves the established context in p->ctx.
 */
bool client_handshake(struct peer *p, const char *service, bool bytewise);

/* --- the library side -------------------------------------------------- */

/* A client connection with host=localhost and the given gssencmode on `fd`. */
pggss_conn *library_client(int fd, const char *gssencmode);
/* An acceptor with the server keytab on `fd`. */
pggss_conn *library_acceptor(int fd);

/*
 * Checks a connection after a failed poll: poll status FAILED, result
 * code, message fragment, outcome FAILED, no encryption, the same failure
 * from a second poll, and a read that returns -1 with EINVAL and leaves the
 * caller's buffer untouched.
 */
void expect_negotiation_failed(pggss_conn *conn, bool acceptor, int poll_status, pggss_result expected,
                               const char *fragment);
/*
 * Reads into a buffer filled with a sentinel and checks that the read
 * returns -1 with `expected_errno` and result `expected`, that the message
 * contains `fragment`, and that no byte of the buffer changed.
 */
void expect_read_rejected(pggss_conn *conn, int expected_errno, pggss_result expected, const char *fragment);
/* Reads and checks that exactly `len` bytes equal to `data` arrive, in one or more reads. */
void expect_read_exact(pggss_conn *conn, const void *data, size_t len);
/* Checks that the message has no C0 or C1 control character and no DEL. */
void expect_clean_message(const char *message);
/* Checks that `fd` is open and its status flags equal `flags`. */
void expect_fd_untouched(int fd, int flags);
/* Checks that nothing waits to be read on `fd`: the library sent nothing more. */
void expect_nothing_sent(int peer_fd);

/* The GSSENCRequest packet. */
extern const uint8_t gssenc_request[8];
/* A StartupMessage for user tester, database tester. */
void startup_message(struct bytes *out);

#endif
