/*
 * In-process framing throughput: plaintext moved from an initiator to an
 * acceptor, both in this process, with no socket in between.
 *
 *   framing pggssenc MEGABYTES   two pggss_conn handles in buffer mode
 *                                (pggss_conn_use_buffers): the client
 *                                writes one packet's plaintext per
 *                                pggss_conn_write, the bytes it queues are
 *                                taken and fed to the acceptor, which reads
 *                                them back with pggss_conn_read
 *   framing raw MEGABYTES        the floor: gss_wrap on an initiator
 *                                context and gss_unwrap on an acceptor
 *                                context, with libgssapi_krb5 directly
 *
 * Both modes establish real Kerberos contexts from the fixture's
 * credentials: the client's ticket cache (KRB5CCNAME) and the server
 * keytab (PGGSS_SERVER_KEYTAB) for postgres@localhost. Both move packets of
 * the same plaintext size, the largest whose wrap token fits a 16384-byte
 * packet with its 4-byte length word (gss_wrap_size_limit of 16380). The
 * program prints bytes=N seconds=S cpu_seconds=C packet=P: the wall-clock
 * and the CPU time of the timed loop. The loop runs on one thread without
 * waiting, so the CPU time is its duration without the time that other
 * processes took the CPU away.
 */

#define _GNU_SOURCE

#include "benchutil.h"
#include "pggssenc.h"

#include <errno.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest wrap token per packet: PGGSS_MAX_PACKET_SIZE less the length word. */
#define MAX_TOKEN_SIZE (PGGSS_MAX_PACKET_SIZE - 4)

/* Packets whose contents are compared before the timed loop. */
#define CHECKED_PACKETS 16

/* The flags libpq and pggssenc request for an encrypted connection. */
#define REQUEST_FLAGS (GSS_C_MUTUAL_FLAG | GSS_C_REPLAY_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG)

static const char usage[] = "usage: framing pggssenc|raw MEGABYTES\n";

static void fill_pattern(uint8_t *data, size_t length)
{
    uint32_t state = 0x12345678u;
    for (size_t i = 0; i < length; i++) {
        state = state * 1103515245u + 12345u;
        data[i] = (uint8_t)(state >> 16);
    }
}

/* ---- pggssenc in buffer mode ---- */

static void die_conn(pggss_conn *conn, const char *call)
{
    char result_text[128];
    int saved_errno = errno;
    pggss_result result = pggss_conn_last_result(conn);
    pggss_result_text(result, result_text, sizeof result_text);
    die("%s failed with errno %d: %s (pggss_result %u: %s)", call, saved_errno, pggss_conn_error_message(conn),
        (unsigned)result, result_text);
}

/* Moves every byte that `from` queued for sending into `to`. */
static void shuttle(pggss_conn *from, pggss_conn *to, uint8_t *wire, size_t wire_size)
{
    size_t taken;
    while ((taken = pggss_conn_take_output(from, wire, wire_size)) > 0) {
        if (pggss_conn_feed(to, wire, taken) != PGGSS_RESULT_OK)
            die_conn(to, "pggss_conn_feed");
    }
}

static void handshake_buffers(pggss_conn *client, pggss_conn *acceptor, uint8_t *wire, size_t wire_size)
{
    int client_status = -1, acceptor_status = -1;
    for (int round = 0; round < 50; round++) {
        if (client_status != PGGSS_POLLING_STATUS_OK) {
            client_status = pggss_conn_connect_poll(client);
            if (client_status == PGGSS_POLLING_STATUS_FAILED)
                die_conn(client, "pggss_conn_connect_poll");
        }
        shuttle(client, acceptor, wire, wire_size);
        if (acceptor_status != PGGSS_POLLING_STATUS_OK) {
            acceptor_status = pggss_conn_accept_poll(acceptor);
            if (acceptor_status == PGGSS_POLLING_STATUS_FAILED)
                die_conn(acceptor, "pggss_conn_accept_poll");
        }
        shuttle(acceptor, client, wire, wire_size);
        if (client_status == PGGSS_POLLING_STATUS_OK && acceptor_status == PGGSS_POLLING_STATUS_OK)
            break;
    }
    if (pggss_conn_outcome(client) != PGGSS_OUTCOME_ENCRYPTED ||
        pggss_conn_outcome(acceptor) != PGGSS_OUTCOME_ENCRYPTED)
        die("the in-memory handshake ended with outcomes %d (client) and %d (acceptor) instead of ENCRYPTED",
            (int)pggss_conn_outcome(client), (int)pggss_conn_outcome(acceptor));
}

/*
 * Sends one packet's plaintext from client to acceptor and reads it back.
 * Not inlined, so that bench/profile can restrict callgrind to it.
 */
static __attribute__((noinline)) void transfer_packet(pggss_conn *client, pggss_conn *acceptor, const uint8_t *data, uint8_t *received,
                            size_t packet, uint8_t *wire, size_t wire_size)
{
    ssize_t written = pggss_conn_write(client, data, packet);
    if (written != (ssize_t)packet)
        die_conn(client, "pggss_conn_write");
    shuttle(client, acceptor, wire, wire_size);
    size_t total_read = 0;
    while (total_read < packet) {
        ssize_t count = pggss_conn_read(acceptor, received + total_read, packet - total_read);
        if (count <= 0)
            die_conn(acceptor, "pggss_conn_read");
        total_read += (size_t)count;
    }
}

static void run_pggssenc(uint64_t total)
{
    pggss_conn *client, *acceptor;
    if (pggss_conn_new(&client) != PGGSS_RESULT_OK || pggss_acceptor_new(&acceptor) != PGGSS_RESULT_OK)
        die("pggss_conn_new or pggss_acceptor_new failed");
    if (pggss_conn_set_param(client, "host", "localhost") != PGGSS_RESULT_OK ||
        pggss_conn_set_param(client, "gssencmode", "require") != PGGSS_RESULT_OK ||
        pggss_conn_use_buffers(client) != PGGSS_RESULT_OK)
        die_conn(client, "configuring the client");
    if (pggss_acceptor_set_keytab(acceptor, require_env("PGGSS_SERVER_KEYTAB")) != PGGSS_RESULT_OK ||
        pggss_acceptor_set_service(acceptor, "postgres@localhost") != PGGSS_RESULT_OK ||
        pggss_conn_use_buffers(acceptor) != PGGSS_RESULT_OK)
        die_conn(acceptor, "configuring the acceptor");

    size_t wire_size = PGGSS_MAX_PACKET_SIZE * 4;
    uint8_t *wire = malloc(wire_size);
    if (!wire)
        die("out of memory");
    handshake_buffers(client, acceptor, wire, wire_size);

    size_t packet = pggss_conn_max_plaintext(client);
    if (packet == 0 || packet != pggss_conn_max_plaintext(acceptor))
        die("pggss_conn_max_plaintext returned %zu (client) and %zu (acceptor)", packet,
            pggss_conn_max_plaintext(acceptor));
    uint8_t *data = malloc(packet), *received = malloc(packet);
    if (!data || !received)
        die("out of memory");
    fill_pattern(data, packet);

    for (int i = 0; i < CHECKED_PACKETS; i++) {
        memset(received, 0, packet);
        transfer_packet(client, acceptor, data, received, packet, wire, wire_size);
        if (memcmp(data, received, packet) != 0)
            die("packet %d arrived changed", i);
    }

    uint64_t packets = (total + packet - 1) / packet;
    double cpu_started = process_cpu_seconds();
    double started = now_seconds();
    for (uint64_t i = 0; i < packets; i++)
        transfer_packet(client, acceptor, data, received, packet, wire, wire_size);
    double seconds = now_seconds() - started;
    double cpu = process_cpu_seconds() - cpu_started;

    pggss_conn_free(client);
    pggss_conn_free(acceptor);
    free(wire);
    free(data);
    free(received);
    printf("bytes=%llu seconds=%.6f cpu_seconds=%.6f packet=%zu\n", (unsigned long long)(packets * packet), seconds,
           cpu, packet);
}

/* ---- raw gss_wrap / gss_unwrap ---- */

static void die_gss(const char *call, OM_uint32 major, OM_uint32 minor)
{
    char text[1024] = "";
    size_t used = 0;
    OM_uint32 codes[2] = {major, minor};
    int types[2] = {GSS_C_GSS_CODE, GSS_C_MECH_CODE};
    for (int k = 0; k < 2; k++) {
        OM_uint32 context = 0, ignored;
        gss_buffer_desc message;
        do {
            if (GSS_ERROR(gss_display_status(&ignored, codes[k], types[k], GSS_C_NO_OID, &context, &message)))
                break;
            int written = snprintf(text + used, sizeof text - used, "%s%.*s", used ? "; " : "",
                                   (int)message.length, (const char *)message.value);
            if (written > 0 && (size_t)written < sizeof text - used)
                used += (size_t)written;
            gss_release_buffer(&ignored, &message);
        } while (context != 0);
    }
    die("%s failed: %s (major 0x%08x, minor %u)", call, text, major, minor);
}

static void establish_raw(gss_ctx_id_t *initiator, gss_ctx_id_t *acceptor)
{
    OM_uint32 major, minor;
    gss_name_t target;
    gss_buffer_desc name_text = {strlen("postgres@localhost"), (void *)"postgres@localhost"};
    major = gss_import_name(&minor, &name_text, GSS_C_NT_HOSTBASED_SERVICE, &target);
    if (GSS_ERROR(major))
        die_gss("gss_import_name", major, minor);

    gss_cred_id_t initiator_cred, acceptor_cred;
    major = gss_acquire_cred(&minor, GSS_C_NO_NAME, GSS_C_INDEFINITE, GSS_C_NO_OID_SET, GSS_C_INITIATE,
                             &initiator_cred, NULL, NULL);
    if (GSS_ERROR(major))
        die_gss("gss_acquire_cred (initiator)", major, minor);
    gss_key_value_element_desc element = {"keytab", require_env("PGGSS_SERVER_KEYTAB")};
    gss_key_value_set_desc store = {1, &element};
    major = gss_acquire_cred_from(&minor, target, GSS_C_INDEFINITE, GSS_C_NO_OID_SET, GSS_C_ACCEPT, &store,
                                  &acceptor_cred, NULL, NULL);
    if (GSS_ERROR(major))
        die_gss("gss_acquire_cred_from (acceptor)", major, minor);

    *initiator = GSS_C_NO_CONTEXT;
    *acceptor = GSS_C_NO_CONTEXT;
    gss_buffer_desc to_acceptor = GSS_C_EMPTY_BUFFER, to_initiator = GSS_C_EMPTY_BUFFER;
    OM_uint32 initiator_major = GSS_S_CONTINUE_NEEDED, acceptor_major = GSS_S_CONTINUE_NEEDED;
    OM_uint32 flags = 0;
    for (int round = 0; round < 10 && (initiator_major != GSS_S_COMPLETE || acceptor_major != GSS_S_COMPLETE);
         round++) {
        if (initiator_major != GSS_S_COMPLETE) {
            initiator_major = gss_init_sec_context(&minor, initiator_cred, initiator, target, GSS_C_NO_OID,
                                                   REQUEST_FLAGS, 0, GSS_C_NO_CHANNEL_BINDINGS,
                                                   round == 0 ? GSS_C_NO_BUFFER : &to_initiator, NULL,
                                                   &to_acceptor, &flags, NULL);
            if (GSS_ERROR(initiator_major))
                die_gss("gss_init_sec_context", initiator_major, minor);
            gss_release_buffer(&minor, &to_initiator);
        }
        if (to_acceptor.length > 0) {
            acceptor_major = gss_accept_sec_context(&minor, acceptor, acceptor_cred, &to_acceptor,
                                                    GSS_C_NO_CHANNEL_BINDINGS, NULL, NULL, &to_initiator, NULL,
                                                    NULL, NULL);
            if (GSS_ERROR(acceptor_major))
                die_gss("gss_accept_sec_context", acceptor_major, minor);
            gss_release_buffer(&minor, &to_acceptor);
        }
    }
    if (initiator_major != GSS_S_COMPLETE || acceptor_major != GSS_S_COMPLETE)
        die("the raw GSSAPI handshake did not complete within 10 rounds");
    if ((flags & REQUEST_FLAGS) != REQUEST_FLAGS)
        die("the raw context lacks requested flags: 0x%x of 0x%x", flags, REQUEST_FLAGS);
    gss_release_buffer(&minor, &to_initiator);
    gss_release_name(&minor, &target);
    gss_release_cred(&minor, &initiator_cred);
    gss_release_cred(&minor, &acceptor_cred);
}

/* Wraps and unwraps one packet; not inlined, for bench/profile. */
static __attribute__((noinline)) void wrap_unwrap(gss_ctx_id_t initiator, gss_ctx_id_t acceptor, const uint8_t *data, size_t packet,
                        gss_buffer_desc *plaintext_out)
{
    OM_uint32 major, minor;
    int conf_state = 0;
    gss_buffer_desc input = {packet, (void *)data}, token;
    major = gss_wrap(&minor, initiator, 1, GSS_C_QOP_DEFAULT, &input, &conf_state, &token);
    if (major != GSS_S_COMPLETE || !conf_state)
        die_gss("gss_wrap", major, minor);
    if (token.length > MAX_TOKEN_SIZE)
        die("gss_wrap produced a %zu-byte token, over %d", token.length, MAX_TOKEN_SIZE);
    major = gss_unwrap(&minor, acceptor, &token, plaintext_out, &conf_state, NULL);
    if (major != GSS_S_COMPLETE || !conf_state)
        die_gss("gss_unwrap", major, minor);
    gss_release_buffer(&minor, &token);
}

static void run_raw(uint64_t total)
{
    gss_ctx_id_t initiator, acceptor;
    establish_raw(&initiator, &acceptor);

    OM_uint32 major, minor, max_input = 0;
    major = gss_wrap_size_limit(&minor, initiator, 1, GSS_C_QOP_DEFAULT, MAX_TOKEN_SIZE, &max_input);
    if (major != GSS_S_COMPLETE || max_input == 0)
        die_gss("gss_wrap_size_limit", major, minor);
    size_t packet = max_input;
    uint8_t *data = malloc(packet);
    if (!data)
        die("out of memory");
    fill_pattern(data, packet);

    for (int i = 0; i < CHECKED_PACKETS; i++) {
        gss_buffer_desc plaintext;
        wrap_unwrap(initiator, acceptor, data, packet, &plaintext);
        if (plaintext.length != packet || memcmp(plaintext.value, data, packet) != 0)
            die("packet %d arrived changed", i);
        gss_release_buffer(&minor, &plaintext);
    }

    uint64_t packets = (total + packet - 1) / packet;
    double cpu_started = process_cpu_seconds();
    double started = now_seconds();
    for (uint64_t i = 0; i < packets; i++) {
        gss_buffer_desc plaintext;
        wrap_unwrap(initiator, acceptor, data, packet, &plaintext);
        gss_release_buffer(&minor, &plaintext);
    }
    double seconds = now_seconds() - started;
    double cpu = process_cpu_seconds() - cpu_started;

    gss_delete_sec_context(&minor, &initiator, GSS_C_NO_BUFFER);
    gss_delete_sec_context(&minor, &acceptor, GSS_C_NO_BUFFER);
    free(data);
    printf("bytes=%llu seconds=%.6f cpu_seconds=%.6f packet=%zu\n", (unsigned long long)(packets * packet), seconds,
           cpu, packet);
}

int main(int argc, char **argv)
{
    set_program_name(argv[0]);
    if (argc != 3) {
        fputs(usage, stderr);
        return 2;
    }
    uint64_t total = parse_count(argv[2], 1, "MEGABYTES") * 1000000u;
    if (strcmp(argv[1], "pggssenc") == 0)
        run_pggssenc(total);
    else if (strcmp(argv[1], "raw") == 0)
        run_raw(total);
    else {
        fputs(usage, stderr);
        return 2;
    }
    return 0;
}
