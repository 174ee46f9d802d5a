/*
 * Helpers shared by the benchmark programs: fatal errors, monotonic time,
 * CPU time from getrusage, resident set size from /proc/self/status, and
 * connection settings from the environment of tests/fixture/pgkrb.
 */

#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Prints "PROGRAM: message" to standard error and exits with status 1. */
void die(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Sets the program name that die() prints. */
void set_program_name(const char *name);

/* Seconds on CLOCK_MONOTONIC. */
double now_seconds(void);

/* CPU seconds of this process so far, from CLOCK_PROCESS_CPUTIME_ID. */
double process_cpu_seconds(void);

/* User and system CPU seconds of this process so far (RUSAGE_SELF). */
void cpu_seconds(double *user, double *system);

/* Resident set size of this process in KiB, from VmRSS in /proc/self/status. */
long rss_kib(void);

/* Returns the environment variable `name`, or exits when it is unset or empty. */
const char *require_env(const char *name);

/* Parses a decimal count of at least `minimum`, or exits naming `what`. */
uint64_t parse_count(const char *text, uint64_t minimum, const char *what);

/* Raises the soft limit on open files to the hard limit. */
void raise_file_limit(void);

/*
 * Reads the whole file at `path` into memory. Stores its size in `*size`;
 * the caller frees the returned buffer.
 */
uint8_t *read_whole_file(const char *path, size_t *size);

/*
 * Prints the shared result line of a COPY run:
 * bytes=N seconds=S user=U system=Y.
 */
void print_transfer_result(uint64_t bytes, double seconds, double user, double system);

#endif /* BENCHUTIL_H */
