/*
 * PostgreSQL protocol helpers and logging for pggss-proxy: ErrorResponse,
 * StartupMessage parsing, message tracking and address formatting.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "proxy.h"

uint32_t read_be32(const uint8_t *bytes)
{
    return ((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) | ((uint32_t)bytes[2] << 8) | bytes[3];
}

static void write_be32(uint8_t *bytes, uint32_t value)
{
    bytes[0] = (uint8_t)(value >> 24);
    bytes[1] = (uint8_t)(value >> 16);
    bytes[2] = (uint8_t)(value >> 8);
    bytes[3] = (uint8_t)value;
}

/* Appends a field code and a NUL-terminated value. Returns the new length, or 0 when it does not fit. */
static size_t append_error_field(uint8_t *out, size_t capacity, size_t length, char code, const char *value)
{
    size_t value_length = strlen(value) + 1;
    if (length + 1 + value_length > capacity)
        return 0;
    out[length] = (uint8_t)code;
    memcpy(out + length + 1, value, value_length);
    return length + 1 + value_length;
}

size_t build_error_response(uint8_t *out, size_t capacity, const char *sqlstate, const char *message)
{
    /* The type byte and length word come first, and the length is patched at the end. */
    size_t length = 5;
    if (capacity < length)
        return 0;
    out[0] = 'E';
    /* 'S' is the localized severity and 'V' the untranslated one, which servers send since PostgreSQL 9.6. */
    length = append_error_field(out, capacity, length, 'S', "FATAL");
    if (length != 0)
        length = append_error_field(out, capacity, length, 'V', "FATAL");
    if (length != 0)
        length = append_error_field(out, capacity, length, 'C', sqlstate);
    if (length != 0)
        length = append_error_field(out, capacity, length, 'M', message);
    if (length == 0 || length + 1 > capacity)
        return 0;
    out[length++] = 0;
    write_be32(out + 1, (uint32_t)(length - 1));
    return length;
}

/* Copies a NUL-terminated string, truncating it to fit. */
static void copy_truncated(char *out, size_t size, const char *value)
{
    snprintf(out, size, "%s", value);
}

int parse_startup_message(const uint8_t *packet, size_t length, struct startup_info *info, char *error,
                          size_t error_size)
{
    memset(info, 0, sizeof(*info));
    if (length < 9 || packet[length - 1] != 0) {
        snprintf(error, error_size, "invalid StartupMessage: the parameter list does not end with a NUL byte");
        return -1;
    }

    /* Pairs of NUL-terminated key and value follow the length and version words, and an empty key ends them. */
    size_t offset = 8;
    while (offset < length && packet[offset] != 0) {
        const char *key = (const char *)packet + offset;
        size_t key_length = strnlen(key, length - offset);
        offset += key_length + 1;
        if (offset >= length) {
            snprintf(error, error_size, "invalid StartupMessage: parameter \"%.64s\" has no value", key);
            return -1;
        }
        const char *value = (const char *)packet + offset;
        size_t value_length = strnlen(value, length - offset);
        if (offset + value_length >= length) {
            snprintf(error, error_size, "invalid StartupMessage: value of \"%.64s\" is not terminated", key);
            return -1;
        }
        offset += value_length + 1;

        if (strcmp(key, "user") == 0) {
            copy_truncated(info->user, sizeof(info->user), value);
            info->has_user = true;
        } else if (strcmp(key, "database") == 0) {
            copy_truncated(info->database, sizeof(info->database), value);
        }
    }
    if (offset != length - 1) {
        snprintf(error, error_size, "invalid StartupMessage: %zu bytes follow the parameter list",
                 length - 1 - offset);
        return -1;
    }
    /* PostgreSQL uses the user name when the database is not given. */
    if (info->database[0] == 0 && info->has_user)
        copy_truncated(info->database, sizeof(info->database), info->user);
    return 0;
}

void tracker_feed(struct message_tracker *tracker, const uint8_t *data, size_t length)
{
    while (length > 0 && !tracker->invalid) {
        if (tracker->body_remaining > 0) {
            size_t take = length < tracker->body_remaining ? length : tracker->body_remaining;
            tracker->body_remaining -= (uint32_t)take;
            data += take;
            length -= take;
            continue;
        }
        tracker->header[tracker->header_length++] = *data++;
        length--;
        if (tracker->header_length == sizeof(tracker->header)) {
            uint32_t message_length = read_be32(tracker->header + 1);
            tracker->header_length = 0;
            if (message_length < 4) {
                tracker->invalid = true;
                return;
            }
            tracker->last_type = (char)tracker->header[0];
            tracker->body_remaining = message_length - 4;
        }
    }
}

bool tracker_ended_with_terminate(const struct message_tracker *tracker)
{
    return !tracker->invalid && tracker->header_length == 0 && tracker->body_remaining == 0 &&
           tracker->last_type == 'X';
}

void tracker_describe(const struct message_tracker *tracker, char *out, size_t size)
{
    if (tracker->invalid) {
        snprintf(out, size, "after a message with an invalid length word");
    } else if (tracker->last_type == 0 && tracker->header_length == 0) {
        snprintf(out, size, "before its first message");
    } else if (tracker->header_length > 0) {
        snprintf(out, size, "in the header of a message, after message type '%c'", tracker->last_type);
    } else if (tracker->body_remaining > 0) {
        snprintf(out, size, "in the middle of message type '%c', %u bytes short", tracker->last_type,
                 tracker->body_remaining);
    } else {
        snprintf(out, size, "after message type '%c'", tracker->last_type);
    }
}

int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void log_line(const char *format, ...)
{
    struct timespec now;
    struct tm utc;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);

    /* One fprintf per line, so that lines from concurrent writers to the same file do not interleave. */
    char line[4096];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    for (char *c = line; *c; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
    fprintf(stderr, "%s.%03ldZ pggss-proxy: %s\n", stamp, now.tv_nsec / 1000000, line);
}

static bool is_plain_character(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("@._/:+-", c);
}

void append_field(char *out, size_t size, const char *key, const char *value)
{
    size_t length = strlen(out);
    if (length >= size)
        return;
    if (value == NULL || value[0] == 0) {
        snprintf(out + length, size - length, " %s=-", key);
        return;
    }

    bool plain = true;
    for (const char *c = value; *c; c++)
        plain = plain && is_plain_character((unsigned char)*c);
    if (plain) {
        snprintf(out + length, size - length, " %s=%s", key, value);
        return;
    }

    /* Quote the value, escaping quotes, backslashes and bytes outside printable ASCII. */
    char quoted[512];
    size_t used = 0;
    quoted[used++] = '"';
    for (const unsigned char *c = (const unsigned char *)value; *c && used + 6 < sizeof(quoted); c++) {
        if (*c == '"' || *c == '\\') {
            quoted[used++] = '\\';
            quoted[used++] = (char)*c;
        } else if (*c < 0x20 || *c >= 0x7f) {
            used += (size_t)snprintf(quoted + used, sizeof(quoted) - used, "\\x%02x", *c);
        } else {
            quoted[used++] = (char)*c;
        }
    }
    quoted[used++] = '"';
    quoted[used] = 0;
    snprintf(out + length, size - length, " %s=%s", key, quoted);
}

void format_address(const struct sockaddr *addr, socklen_t addr_len, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    if (addr->sa_family == AF_INET && addr_len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, size, "%s:%u", host, ntohs(in->sin_port));
    } else if (addr->sa_family == AF_INET6 && addr_len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, size, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (addr->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
        snprintf(out, size, "unix:%s", un->sun_path);
    } else {
        snprintf(out, size, "unknown");
    }
}
