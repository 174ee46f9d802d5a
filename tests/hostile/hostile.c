/*
 * Runs the hostile-peer cases. Each case runs in a child process of its
 * own, so that a crash, an abort or a hang fails that case alone. A case
 * that takes longer than HOSTILE_CASE_TIMEOUT seconds (default 60) is
 * killed and fails.
 *
 *   hostile               run every case
 *   hostile NAME...       run the named cases
 *   hostile --list        print the case names
 *   hostile --no-fork NAME  run one case in this process (for a debugger)
 *
 * Prints "PASS name" or "FAIL name (reason)" per case and "N passed,
 * M failed" at the end; the exit status is 1 when any case failed.
 */

#define _GNU_SOURCE

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static const struct test_case *find_case(const char *name)
{
    for (size_t i = 0; i < client_case_count; i++)
        if (strcmp(client_cases[i].name, name) == 0)
            return &client_cases[i];
    for (size_t i = 0; i < acceptor_case_count; i++)
        if (strcmp(acceptor_cases[i].name, name) == 0)
            return &acceptor_cases[i];
    return NULL;
}

/* Runs one case in a child process; returns true when it passed. */
static bool run_forked(const struct test_case *c, unsigned timeout)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        printf("FAIL %s (fork failed)\n", c->name);
        return false;
    }
    if (pid == 0) {
        alarm(timeout);
        check_failures = 0;
        c->run();
        fflush(stdout);
        exit(check_failures == 0 ? 0 : 1);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("PASS %s\n", c->name);
        return true;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        printf("FAIL %s (timed out after %u s)\n", c->name, timeout);
    else if (WIFSIGNALED(status))
        printf("FAIL %s (killed by signal %d: %s)\n", c->name, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        printf("FAIL %s (exit status %d)\n", c->name, WEXITSTATUS(status));
    return false;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *timeout_text = getenv("HOSTILE_CASE_TIMEOUT");
    unsigned timeout = timeout_text ? (unsigned)strtoul(timeout_text, NULL, 10) : 60;

    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < client_case_count; i++)
            printf("%s\n", client_cases[i].name);
        for (size_t i = 0; i < acceptor_case_count; i++)
            printf("%s\n", acceptor_cases[i].name);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--no-fork") == 0) {
        const struct test_case *c = find_case(argv[2]);
        if (c == NULL) {
            fprintf(stderr, "hostile: no case named %s; see --list\n", argv[2]);
            return 2;
        }
        c->run();
        printf("%s %s\n", check_failures == 0 ? "PASS" : "FAIL", c->name);
        return check_failures == 0 ? 0 : 1;
    }

    unsigned passed = 0, failed = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            const struct test_case *c = find_case(argv[i]);
            if (c == NULL) {
                printf("FAIL %s (no such case)\n", argv[i]);
                failed++;
                continue;
            }
            run_forked(c, timeout) ? passed++ : failed++;
        }
    } else {
        for (size_t i = 0; i < client_case_count; i++)
            run_forked(&client_cases[i], timeout) ? passed++ : failed++;
        for (size_t i = 0; i < acceptor_case_count; i++)
            run_forked(&acceptor_cases[i], timeout) ? passed++ : failed++;
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
