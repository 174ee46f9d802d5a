#define _GNU_SOURCE

#include "benchutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

static const char *program_name = "bench";

void set_program_name(const char *name)
{
    const char *slash = strrchr(name, '/');
    program_name = slash ? slash + 1 : name;
}

void die(const char *format, ...)
{
    va_list args;
    fprintf(stderr, "%s: ", program_name);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
    exit(1);
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double process_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cpu_seconds(double *user, double *system)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        die("getrusage failed: %s", strerror(errno));
    *user = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6;
    *system = (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

long rss_kib(void)
{
    FILE *status = fopen("/proc/self/status", "r");
    if (!status)
        die("cannot open /proc/self/status: %s", strerror(errno));
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, status)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(status);
    if (kib < 0)
        die("VmRSS is missing from /proc/self/status");
    return kib;
}

const char *require_env(const char *name)
{
    const char *value = getenv(name);
    if (!value || !*value)
        die("environment variable %s is not set; run the program under tests/fixture/pgkrb run", name);
    return value;
}

uint64_t parse_count(const char *text, uint64_t minimum, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < minimum)
        die("invalid %s \"%s\": expected a whole number of at least %llu", what, text,
            (unsigned long long)minimum);
    return value;
}

void raise_file_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        die("getrlimit(RLIMIT_NOFILE) failed: %s", strerror(errno));
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
        die("setrlimit(RLIMIT_NOFILE) failed: %s", strerror(errno));
}

uint8_t *read_whole_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (!file)
        die("cannot open %s: %s", path, strerror(errno));
    struct stat info;
    if (fstat(fileno(file), &info) != 0)
        die("cannot stat %s: %s", path, strerror(errno));
    size_t length = (size_t)info.st_size;
    uint8_t *data = malloc(length ? length : 1);
    if (!data)
        die("out of memory reading %s (%zu bytes)", path, length);
    if (fread(data, 1, length, file) != length)
        die("short read from %s", path);
    fclose(file);
    *size = length;
    return data;
}

void print_transfer_result(uint64_t bytes, double seconds, double user, double system)
{
    printf("bytes=%llu seconds=%.6f user=%.6f system=%.6f\n", (unsigned long long)bytes, seconds, user, system);
}
