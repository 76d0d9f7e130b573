// Why C: PR_SET_PDEATHSIG must be set in the child between fork and exec, which posix_spawn cannot do and
// Swift cannot do safely (only async-signal-safe calls may run in the child of a multi-threaded process).
#define _GNU_SOURCE
#include "CSubprocesses.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report_and_exit(int fd, int error) {
    ssize_t ignored = write(fd, &error, sizeof error);
    (void)ignored;
    _exit(127);
}

/// Closes every descriptor from `low` to `high` inclusive.
static void close_range_compat(unsigned int low, unsigned int high) {
    if (low > high) return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, low, high, 0) == 0) return;
#endif
    long limit = sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > 65536) limit = 65536;
    for (unsigned int fd = low; fd <= high && fd < (unsigned int)limit; fd++) close((int)fd);
}

/// Makes `fd` the child's descriptor `target`, keeping it across exec.
static int install(int fd, int target) {
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    return dup2(fd, target) < 0 ? -1 : 0;
}

int activity_sync_spawn(const char *path, char *const argv[], char *const envp[], const char *directory,
                        int stdin_fd, int stdout_fd, int stderr_fd, int new_process_group, int die_with_parent,
                        pid_t *pid_out) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    // The three descriptors must not sit at 0-2 in a way that one dup2 overwrites the next one's source.
    int in = stdin_fd, out = stdout_fd, err = stderr_fd;

    // No signal handler of the parent's may run in the child before its dispositions are reset.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        if (new_process_group && setpgid(0, 0) != 0) report_and_exit(report[1], errno);
        if (die_with_parent) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) report_and_exit(report[1], errno);
            // The parent may have died before the request above: then nobody would send the signal.
            if (getppid() != parent) _exit(127);
        }
        struct sigaction standard;
        memset(&standard, 0, sizeof standard);
        standard.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &standard, NULL);
        // Move sources out of 0-2 first, so installing one cannot clobber another's source.
        if (in >= 0 && in <= 2 && in != 0) in = fcntl(in, F_DUPFD, 3);
        if (out >= 0 && out <= 2 && out != 1) out = fcntl(out, F_DUPFD, 3);
        if (err >= 0 && err <= 2 && err != 2) err = fcntl(err, F_DUPFD, 3);
        if (install(in, 0) != 0 || install(out, 1) != 0 || install(err, 2) != 0) report_and_exit(report[1], errno);
        // Keep the report pipe (close-on-exec) open until exec; close everything else above 2.
        close_range_compat(3, (unsigned int)report[1] - 1);
        close_range_compat((unsigned int)report[1] + 1, ~0U);
        if (directory != NULL && chdir(directory) != 0) report_and_exit(report[1], errno);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        report_and_exit(report[1], errno);
    }
    int fork_error = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    close(report[1]);
    if (pid < 0) {
        close(report[0]);
        return fork_error;
    }
    int child_error = 0;
    ssize_t count;
    do {
        count = read(report[0], &child_error, sizeof child_error);
    } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof child_error) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return child_error == 0 ? ECHILD : child_error;
    }
    *pid_out = pid;
    return 0;
}
