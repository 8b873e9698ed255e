/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock through KVM: vmm-run --vsock (under its default seccomp
 * filter, kill) runs the tests/guests/virtio_vsock.c guest, and this test
 * is the host: it listens at "<path>_1234" for the guest's connection and
 * connects to the device's socket with "CONNECT 5000" as soon as it exists
 * (before the guest's driver runs, so the handshake has to wait). Each
 * connection carries a random token to the guest and must bring back
 * "echo TOKEN"; the guest prints both. Built twice: as
 * test_virtio_vsock_vhost (VSOCK_VHOST) the device runs on vhost-vsock and
 * the host side is AF_VSOCK sockets (needs /dev/vhost-vsock: the nested
 * level 1 loads vhost_vsock; 77 without it).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "check_compat.h"
#include "harness.h"

/* Polls of a second in a row without progress before vmm-run counts as
 * hung (Check's timeout covers the rest). */
#define IDLE_POLLS_MAX 120

#ifndef VSOCK_VHOST
#define VSOCK_VHOST 0
#endif

#if !VSOCK_VHOST
static void sun_set(struct sockaddr_un *sa, const char *at)
{
    size_t n = strlen(at);
    ck_assert_uint_lt(n, sizeof(sa->sun_path));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, at, n + 1);
}
#endif

static void random_token(char *token)
{
    uint8_t rnd[8];
    ck_assert_int_eq(getrandom(rnd, sizeof(rnd), 0), (ssize_t)sizeof(rnd));
    for (int i = 0; i < 8; i++)
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);
}

/* Append what fd has to buf (size bytes, kept NUL-terminated). */
static void gather(int fd, char *buf, size_t size)
{
    size_t have = strlen(buf);
    ssize_t n = read(fd, buf + have, size - 1 - have);
    if (n > 0)
        buf[have + (size_t)n] = '\0';
}

START_TEST(guest_talks_to_the_host_both_ways)
{
    char dir[PATH_MAX], sock[PATH_MAX], listen_at[PATH_MAX + 8], arg[PATH_MAX + 16];
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(dir, sizeof(dir), "vmm-vsock-")));
    vmm_test_path(sock, sizeof(sock), dir, "v.sock");
    snprintf(listen_at, sizeof(listen_at), "%s_1234", sock);
    char token1[17], token2[17];
    random_token(token1);
    random_token(token2);

#if VSOCK_VHOST
    /* A CID of this run's own (CIDs are the whole host's). */
    unsigned cid = 1000 + (unsigned)getpid() % 1000000;
    int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(lfd, 0);
    struct sockaddr_vm svm = {.svm_family = AF_VSOCK, .svm_port = 1234, .svm_cid = VMADDR_CID_ANY};
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&svm, sizeof(svm)), 0);
    snprintf(arg, sizeof(arg), "cid=%u,vhost=on", cid);
#else
    struct sockaddr_un sa;
    snprintf(arg, sizeof(arg), "cid=7,path=%s", sock);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sun_set(&sa, listen_at);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
#endif
    ck_assert_int_eq(listen(lfd, 4), 0);

    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_vsock"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--vsock",  arg,
                    NULL};
    int out[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);

    /* The host's connection, as soon as the device is there (vhost: the
     * kernel times a connect out after 2 s; the guest takes a retry). */
    int hfd = -1;
    for (int i = 0; i < 500 && hfd < 0; i++) {
#if VSOCK_VHOST
        int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        svm = (struct sockaddr_vm){.svm_family = AF_VSOCK, .svm_port = 5000, .svm_cid = cid};
        if (connect(s, (struct sockaddr *)&svm, sizeof(svm)) == 0) {
#else
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sun_set(&sa, sock);
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
#endif
            hfd = s;
            break;
        }
        close(s);
        usleep(10000);
    }
    ck_assert_msg(hfd >= 0, "no connection to the guest's port 5000 (%s)", strerror(errno));
    char text[8192] = "", from_g[256] = "", from_h[256] = "";
    char echo1[32];
    snprintf(echo1, sizeof(echo1), "echo %s", token1);
    int gfd = -1;
    bool eof = false, sent1 = false, sent2 = false;
#if VSOCK_VHOST
    char msg2[32];
    int n2 = snprintf(msg2, sizeof(msg2), "two %s", token2);
    ck_assert_int_eq(write(hfd, msg2, (size_t)n2), n2); /* connected: the guest accepted */
    sent2 = true;
#else
    ck_assert_int_eq(write(hfd, "CONNECT 5000\n", 13), 13);
#endif
    for (unsigned idle = 0; idle < IDLE_POLLS_MAX && !eof;) {
        struct pollfd p[4] = {{.fd = out[0], .events = POLLIN},
                              {.fd = lfd, .events = POLLIN},
                              {.fd = hfd, .events = POLLIN},
                              {.fd = gfd, .events = POLLIN}};
        if (poll(p, 4, 1000) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        if (p[1].revents & POLLIN) {
            gfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            ck_assert_int_ge(gfd, 0);
            char msg[32];
            int n = snprintf(msg, sizeof(msg), "one %s", token1);
            ck_assert_int_eq(write(gfd, msg, (size_t)n), n);
            sent1 = true;
            close(lfd);
            lfd = -1;
        }
        if (p[2].revents) {
            gather(hfd, from_h, sizeof(from_h));
            if (!sent2 && strchr(from_h, '\n')) {
                /* "OK <port>\n": the guest accepted; send its token. */
                char msg[32];
                int n = snprintf(msg, sizeof(msg), "two %s", token2);
                ck_assert_int_eq(write(hfd, msg, (size_t)n), n);
                sent2 = true;
            }
        }
        if (gfd >= 0 && p[3].revents) {
            gather(gfd, from_g, sizeof(from_g));
            if (strcmp(from_g, echo1) == 0) { /* all there: this side closes */
                close(gfd);
                gfd = -1;
            }
        }
        if (p[0].revents) {
            size_t have = strlen(text);
            ssize_t n = read(out[0], text + have, sizeof(text) - 1 - have);
            if (n <= 0)
                eof = true;
            else
                text[have + (size_t)n] = '\0';
        }
    }
    close(out[0]);
    if (!eof)
        kill(pid, SIGKILL); /* silent too long: hung */
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    /* What the guest sent before it exited is in the sockets by now. */
    if (gfd >= 0)
        gather(gfd, from_g, sizeof(from_g));
    gather(hfd, from_h, sizeof(from_h));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "vmm-run failed (0x%x): %s", st, text);
    ck_assert_msg(sent1 && sent2, "connections: guest's %d, host's %d; %s", sent1, sent2, text);
    char want[64];
    ck_assert_msg(strcmp(from_g, echo1) == 0, "guest's connection brought '%s'", from_g);
    ck_assert_msg(VSOCK_VHOST || strncmp(from_h, "OK ", 3) == 0, "host's connection got '%s'",
                  from_h);
    snprintf(want, sizeof(want), "echo %s", token2);
    ck_assert_msg(strstr(from_h, want), "host's connection got '%s'", from_h);
    snprintf(want, sizeof(want), "one %s, two %s", token1, token2);
    ck_assert_msg(strstr(text, want), "the guest did not print '%s': %s", want, text);
    if (gfd >= 0)
        close(gfd);
    close(hfd);
    if (lfd >= 0)
        close(lfd);
    unlink(listen_at);
    ck_assert_int_eq(access(sock, F_OK), -1); /* vmm-run removed it */
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

#if !VSOCK_VHOST
/* Start vmm-run with argv, its output on *out; its pid. */
static pid_t spawn(char *const argv[], int *out)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* Wait for pid; its exit status (128 + signal if killed) and its peak
 * resident set in KiB. */
static int reap(pid_t pid, long *maxrss_kb)
{
    int st;
    struct rusage ru;
    ck_assert_int_eq(wait4(pid, &st, 0, &ru), pid);
    *maxrss_kb = ru.ru_maxrss;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The hostile guest (tests/guests/virtio_vsock_hostile.c): its malformed
 * packets, its flood of REQUESTs to ports nobody listens on and its bytes
 * past the credit on a connection this host never reads are answered (RST
 * or dropped), vmm-run stays up, its peak RSS stays within what the same
 * launcher with the same device reaches with a guest that does nothing
 * plus the guest's whole memory (16 MiB), and the guest's good connection
 * after all that still gets this host's answer. */
START_TEST(hostile_guest_is_contained)
{
    char dir[PATH_MAX], sock[PATH_MAX], listen_at[PATH_MAX + 8], arg[PATH_MAX + 16];
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(dir, sizeof(dir), "vmm-vsock-")));
    vmm_test_path(sock, sizeof(sock), dir, "v.sock");
    snprintf(listen_at, sizeof(listen_at), "%s_1234", sock);
    snprintf(arg, sizeof(arg), "cid=7,path=%s", sock);
    char token[17];
    random_token(token);

    char *idle_argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("hello"),
                         "--transport", "mmio", /* the guest drives virtio-mmio */
                         "--mem",       "16M",      "--vsock",
                         arg,           NULL};
    int out;
    pid_t pid = spawn(idle_argv, &out);
    char text[8192] = "";
    for (ssize_t n; (n = read(out, text, sizeof(text) - 1)) > 0;)
        ;
    close(out);
    long base_kb;
    ck_assert_msg(reap(pid, &base_kb) == 0, "the idle guest failed");

    struct sockaddr_un sa;
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sun_set(&sa, listen_at);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(lfd, 4), 0);
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_vsock_hostile"),
                    "--transport", "mmio", /* the guest drives virtio-mmio */
                    "--mem",       "16M",      "--vsock",
                    arg,           NULL};
    pid = spawn(argv, &out);
    int conns[2] = {-1, -1}; /* the first is never read; the second is answered */
    unsigned nconns = 0;
    char from_g[64] = "";
    bool eof = false, answered = false;
    text[0] = '\0';
    for (unsigned idle = 0; idle < IDLE_POLLS_MAX && !eof;) {
        struct pollfd p[3] = {{.fd = out, .events = POLLIN},
                              {.fd = nconns < 2 ? lfd : -1, .events = POLLIN},
                              {.fd = conns[1], .events = POLLIN}};
        if (poll(p, 3, 1000) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        if (p[1].revents & POLLIN) {
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            ck_assert_int_ge(c, 0);
            conns[nconns++] = c;
        }
        if (conns[1] >= 0 && p[2].revents && !answered) {
            gather(conns[1], from_g, sizeof(from_g));
            if (strcmp(from_g, "hello") == 0) {
                char msg[32];
                int n = snprintf(msg, sizeof(msg), "welcome %s", token);
                ck_assert_int_eq(write(conns[1], msg, (size_t)n), n);
                answered = true;
            }
        }
        if (p[0].revents) {
            size_t have = strlen(text);
            ssize_t n = read(out, text + have, sizeof(text) - 1 - have);
            if (n <= 0)
                eof = true;
            else
                text[have + (size_t)n] = '\0';
        }
    }
    close(out);
    if (!eof)
        kill(pid, SIGKILL); /* silent too long: hung */
    long hostile_kb;
    int status = reap(pid, &hostile_kb);
    ck_assert_msg(status == 0, "vmm-run: status %d: %s", status, text);
    char want[64];
    snprintf(want, sizeof(want), "virtio_vsock_hostile ok: %s", token);
    ck_assert_msg(strstr(text, want), "the guest did not print '%s': %s", want, text);
    ck_assert_uint_eq(nconns, 2);
    printf("%s", strstr(text, want)); /* the guest's figures */
    printf("vmm-run's peak RSS: %ld KiB with the hostile guest, %ld KiB idle\n", hostile_kb,
           base_kb);
    ck_assert_msg(hostile_kb <= base_kb + (16 << 10),
                  "vmm-run's peak RSS: %ld KiB with the hostile guest, %ld KiB idle", hostile_kb,
                  base_kb);
    for (unsigned i = 0; i < nconns; i++)
        close(conns[i]);
    close(lfd);
    unlink(listen_at);
    ck_assert_int_eq(access(sock, F_OK), -1); /* vmm-run removed it */
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST
#endif

int main(void)
{
    if (VSOCK_VHOST && access("/dev/vhost-vsock", R_OK | W_OK) != 0) {
        printf("skipped: /dev/vhost-vsock is missing (modprobe vhost_vsock; the nested level 1 "
               "has it)\n");
        return 77;
    }
    Suite *s = suite_create("virtio-vsock");
    TCase *tc = tcase_create("unix");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, guest_talks_to_the_host_both_ways);
#if !VSOCK_VHOST
    tcase_add_test(tc, hostile_guest_is_contained);
#endif
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
