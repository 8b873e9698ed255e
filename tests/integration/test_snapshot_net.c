/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM with a virtio-net device on a real tap and a virtio-vsock device,
 * snapshotted over vmm-run's control socket and restored on another tap and
 * another vsock path (given again with --restore): both devices work after
 * (tests/guests/snap_netvsock.c). Before the snapshot the guest broadcasts
 * a "ping" and waits for a frame, the device holding one of its receive
 * buffers; after the restore the test sends "go TOKEN" into the new tap and
 * reads the guest's "back TOKEN", and the guest, told by a TRANSPORT_RESET
 * event, opens a new vsock connection to "<path>_1234" and sends "hello
 * TOKEN". The taps are made here, in a network namespace of the test's own
 * (root). Exits 77 when /dev/net/tun cannot be opened. Built twice: as
 * test_snapshot_net_vhost (NET_VHOST) both devices run on the kernel's
 * vhost (vhost-net, vhost-vsock: the host side is then an AF_VSOCK
 * listener), their rings stopped for the snapshot and started at their
 * saved positions (the nested level 1 has /dev/vhost-net and
 * /dev/vhost-vsock; 77 without them).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_compat.h"
#include "harness.h"

#ifndef NET_VHOST
#define NET_VHOST 0
#endif
#define ETHERTYPE 0x88b5
#define GUEST_MAC "\x52\x54\x00\x12\x34\x56"

/* Make tap name a persistent tap, up, with no IPv6 chatter (persist), or
 * delete it. */
static void tap_make(const char *name, bool persist)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ck_assert_msg(ioctl(fd, TUNSETIFF, &ifr) == 0, "tap %s: %s", name, strerror(errno));
    ck_assert_int_eq(ioctl(fd, TUNSETPERSIST, persist ? 1 : 0), 0);
    close(fd);
    if (!persist)
        return;
    char path[128];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
    int f = open(path, O_WRONLY | O_CLOEXEC);
    if (f >= 0) {
        ck_assert_int_eq(write(f, "1", 1), 1);
        close(f);
    }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s, 0);
    ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags |= IFF_UP;
    ck_assert_int_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
    close(s);
}

static int packet_socket(const char *name)
{
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETHERTYPE));
    ck_assert_int_ge(s, 0);
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETHERTYPE),
                              .sll_ifindex = (int)if_nametoindex(name)};
    ck_assert_int_gt(sll.sll_ifindex, 0);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
    return s;
}

/* A frame from the guest on pkt whose payload starts with what, within
 * about wait_ms; each poll slice also sends `send` (when not NULL) to the
 * guest, as a tap with no reader yet drops it. */
static bool frame_from_guest(int pkt, const char *what, int wait_ms, const uint8_t *send,
                             size_t send_len)
{
    for (int waited = 0; waited < wait_ms; waited += 200) {
        if (send)
            (void)sendto(pkt, send, send_len, 0, NULL, 0);
        struct pollfd p = {.fd = pkt, .events = POLLIN};
        if (poll(&p, 1, 200) != 1)
            continue;
        uint8_t f[1600];
        ssize_t n;
        while ((n = recv(pkt, f, sizeof(f), 0)) > 0)
            if ((size_t)n >= 14 + strlen(what) && memcmp(f + 6, GUEST_MAC, 6) == 0 &&
                memcmp(f + 14, what, strlen(what)) == 0)
                return true;
    }
    return false;
}

struct proc {
    pid_t pid;
    int out;
    char output[8192];
    size_t len;
};

/* vmm-run with argv: stdout and stderr to a pipe, stdin /dev/null. */
static void spawn(struct proc *p, char *const argv[])
{
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t parent = getpid();
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    p->out = fds[0];
    p->len = 0;
    p->output[0] = '\0';
}

/* Read its output until it holds marker (NULL: until EOF). */
static void proc_read(struct proc *p, const char *marker)
{
    while (!marker || !strstr(p->output, marker)) {
        ssize_t n = read(p->out, p->output + p->len, sizeof(p->output) - 1 - p->len);
        ck_assert_int_ge(n, 0);
        if (n == 0) {
            ck_assert_msg(!marker, "EOF before '%s': %s", marker, p->output);
            return;
        }
        p->len += (size_t)n;
        p->output[p->len] = '\0';
    }
}

/* Read to EOF and reap it; returns its exit status. */
static int proc_wait(struct proc *p)
{
    proc_read(p, NULL);
    close(p->out);
    int st;
    ck_assert_int_eq(waitpid(p->pid, &st, 0), p->pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *api(int fd, const char *cmd)
{
    static char answer[4096];
    size_t n = strlen(cmd);
    ck_assert_int_eq(send(fd, cmd, n, MSG_NOSIGNAL), (ssize_t)n);
    size_t len = 0;
    while (len == 0 || answer[len - 1] != '\n') {
        ck_assert_uint_lt(len, sizeof(answer) - 1);
        ssize_t r = recv(fd, answer + len, sizeof(answer) - 1 - len, 0);
        ck_assert_int_gt(r, 0);
        len += (size_t)r;
    }
    answer[len - 1] = '\0';
    return answer;
}

static int unix_socket(const char *path, bool listening)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (listening) {
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 4), 0);
    } else {
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    return fd;
}

START_TEST(net_and_vsock_work_after_a_restore)
{
    char tap0[IFNAMSIZ] = "vmmnet0", tap1[IFNAMSIZ] = "vmmnet1";
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(tap0, sizeof(tap0), "vmms%d", (int)getpid() % 1000000);
        snprintf(tap1, sizeof(tap1), "vmmr%d", (int)getpid() % 1000000);
    }
    tap_make(tap0, true);
    tap_make(tap1, true);
    int pkt0 = packet_socket(tap0), pkt1 = packet_socket(tap1);
    char dir[PATH_MAX], snap[PATH_MAX], sock[PATH_MAX], v1[PATH_MAX], v2[PATH_MAX],
        v2port[PATH_MAX + 8];
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(dir, sizeof(dir), "vmm-snapnet-")));
    vmm_test_path(snap, sizeof(snap), dir, "snap");
    vmm_test_path(sock, sizeof(sock), dir, "api");
    vmm_test_path(v1, sizeof(v1), dir, "v1");
    vmm_test_path(v2, sizeof(v2), dir, "v2");
    snprintf(v2port, sizeof(v2port), "%s_1234", v2);
    char net0[64], net1[64], vsock1[PATH_MAX + 32], vsock2[PATH_MAX + 32];
    snprintf(net0, sizeof(net0), "tap=%s,mac=52:54:00:12:34:56%s", tap0,
             NET_VHOST ? ",vhost=on" : "");
    snprintf(net1, sizeof(net1), "tap=%s", tap1);
    if (NET_VHOST) {
        snprintf(vsock1, sizeof(vsock1), "cid=3,vhost=on");
        snprintf(vsock2, sizeof(vsock2), "cid=7,vhost=on");
    } else {
        snprintf(vsock1, sizeof(vsock1), "cid=3,path=%s", v1);
        snprintf(vsock2, sizeof(vsock2), "cid=7,path=%s", v2);
    }

    struct proc p;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("snap_netvsock"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--net",    net0,
                    "--vsock",     vsock1,     "--api-sock",
                    sock,          NULL};
    spawn(&p, argv);
    proc_read(&p, "phase 1\n");
    ck_assert_msg(frame_from_guest(pkt0, "ping", 20000, NULL, 0), "no ping: %s", p.output);
    int fd = unix_socket(sock, false);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "{\"cmd\":\"snapshot\",\"path\":\"%s\"}\n", snap);
    ck_assert_str_eq(api(fd, cmd), "{\"ok\":true}");
    ck_assert_str_eq(api(fd, "{\"cmd\":\"stop\"}\n"), "{\"ok\":true}");
    close(fd);
    ck_assert_int_ne(proc_wait(&p), 0);

    /* --net at a restore names taps only; as many as were saved. */
    char bad_net[64];
    snprintf(bad_net, sizeof(bad_net), "tap=%s,queues=2", tap1);
    char *bad1[] = {VMM_RUN_PATH, "--restore", snap, "--net", bad_net, NULL};
    spawn(&p, bad1);
    ck_assert_int_eq(proc_wait(&p), 1);
    ck_assert_msg(strstr(p.output, "--net takes only tap=NAME there") &&
                      strchr(p.output, '\n')[1] == '\0',
                  "output: %s", p.output);
    char *bad2[] = {VMM_RUN_PATH, "--restore", snap, "--net", net1, "--net", net1, NULL};
    spawn(&p, bad2);
    ck_assert_int_eq(proc_wait(&p), 1);
    ck_assert_msg(strstr(p.output, "it has 1 network devices and --net gives 2"), "output: %s",
                  p.output);
    char *bad3[] = {VMM_RUN_PATH,
                    "--restore",
                    snap,
                    "--vsock",
                    NET_VHOST ? "cid=7,path=/nonexistent/v" : "cid=7,vhost=on",
                    NULL};
    spawn(&p, bad3);
    ck_assert_int_eq(proc_wait(&p), 1);
    ck_assert_msg(strstr(p.output, NET_VHOST ? "its vsock device was saved with vhost-vsock"
                                             : "its vsock device was saved without vhost-vsock"),
                  "output: %s", p.output);

    uint8_t rnd[8];
    ck_assert_int_eq(getrandom(rnd, sizeof(rnd), 0), (ssize_t)sizeof(rnd));
    char token[17];
    for (int i = 0; i < 8; i++)
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);
    uint8_t go[64] = {0};
    memcpy(go, GUEST_MAC, 6);
    memcpy(go + 6, "\x02\x00\x00\x00\x00\x02", 6);
    go[12] = ETHERTYPE >> 8;
    go[13] = ETHERTYPE & 0xff;
    memcpy(go + 14, "go ", 3);
    memcpy(go + 17, token, 16);
    int lfd;
    if (NET_VHOST) { /* the guest's connection to host port 1234 */
        lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(lfd, 0);
        struct sockaddr_vm sv = {
            .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = 1234};
        ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sv, sizeof(sv)), 0);
        ck_assert_int_eq(listen(lfd, 4), 0);
    } else {
        lfd = unix_socket(v2port, true);
    }

    char *again[] = {VMM_RUN_PATH, "--restore", snap, "--net", net1, "--vsock", vsock2, NULL};
    spawn(&p, again);
    char back[32];
    snprintf(back, sizeof(back), "back %s", token);
    ck_assert_msg(frame_from_guest(pkt1, back, 60000, go, sizeof(go)),
                  "no answer on the new tap: %s", p.output);
    struct pollfd pl = {.fd = lfd, .events = POLLIN};
    ck_assert_msg(poll(&pl, 1, 60000) == 1, "no vsock connection: %s", p.output);
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(c, 0);
    char hello[64] = {0}, want[64];
    snprintf(want, sizeof(want), "hello %s", token);
    for (size_t got = 0; got < strlen(want);) {
        ssize_t n = read(c, hello + got, strlen(want) - got);
        ck_assert_int_gt(n, 0);
        got += (size_t)n;
    }
    ck_assert_str_eq(hello, want);
    ck_assert_int_eq(proc_wait(&p), 0);
    snprintf(want, sizeof(want), "snap_netvsock ok: cid 7, token %s", token);
    ck_assert_msg(strstr(p.output, want), "output: %s", p.output);
    /* Nothing from the old tap after the snapshot. */
    uint8_t f[1600];
    ck_assert_int_lt(recv(pkt0, f, sizeof(f), 0), 0);

    close(c);
    close(lfd);
    close(pkt0);
    close(pkt1);
    unlink(v2port);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/state", snap);
    unlink(path);
    snprintf(path, sizeof(path), "%s/memory", snap);
    unlink(path);
    rmdir(snap);
    unlink(sock);
    rmdir(dir);
    tap_make(tap0, false);
    tap_make(tap1, false);
}
END_TEST

int main(void)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("skipped: /dev/net/tun cannot be opened: %s (CI runs as root with it)\n",
               strerror(errno));
        return 77;
    }
    close(fd);
    if (NET_VHOST && (access("/dev/vhost-net", R_OK | W_OK) != 0 ||
                      access("/dev/vhost-vsock", R_OK | W_OK) != 0)) {
        printf("skipped: /dev/vhost-net or /dev/vhost-vsock is missing (modprobe vhost_net "
               "vhost_vsock; the nested level 1 has them)\n");
        return 77;
    }
    vmm_test_require_kvm();
    Suite *s = suite_create("snapshot-net");
    TCase *tc = tcase_create("kvm");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, net_and_vsock_work_after_a_restore);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
