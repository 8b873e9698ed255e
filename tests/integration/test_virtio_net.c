/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net through KVM and a real tap: vmm-run --net runs the
 * tests/guests/virtio_net.c guest, and this test is the network on the
 * tap's other side (a packet socket): it answers the guest's "ping" with a
 * "pong TOKEN" of a random token and expects the guest's "ack TOKEN" back,
 * and the token in the guest's output. The tap is made persistent here, up,
 * in a network namespace of the test's own (root; CI runs as root with
 * /dev/net/tun). Exits 77 without /dev/net/tun. Built twice: as
 * test_virtio_net_vhost (NET_VHOST) the device runs on vhost-net, which
 * needs /dev/vhost-net (the nested level 1 loads vhost_net; 77 without it).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_compat.h"
#include "harness.h"

#ifndef NET_VHOST
#define NET_VHOST 0
#endif
#define ETHERTYPE 0x88b5
#define GUEST_MAC "\x52\x54\x00\x12\x34\x56"
/* Polls of a second in a row without output or frames before vmm-run
 * counts as hung (Check's timeout covers the rest). */
#define IDLE_POLLS_MAX 120

static char tap[IFNAMSIZ];

/* Make tap a persistent tap (so it can be up before vmm-run attaches),
 * with no IPv6 chatter, and up. */
static void tap_make(bool persist)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
    ck_assert_msg(ioctl(fd, TUNSETIFF, &ifr) == 0, "tap %s: %s", tap, strerror(errno));
    ck_assert_int_eq(ioctl(fd, TUNSETPERSIST, persist ? 1 : 0), 0);
    close(fd);
    if (!persist)
        return;
    char path[128];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", tap);
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

static int packet_socket(void)
{
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETHERTYPE));
    ck_assert_int_ge(s, 0);
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETHERTYPE),
                              .sll_ifindex = (int)if_nametoindex(tap)};
    ck_assert_int_gt(sll.sll_ifindex, 0);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
    return s;
}

START_TEST(guest_exchanges_frames_through_the_tap)
{
    if (unshare(CLONE_NEWNET) == 0)
        snprintf(tap, sizeof(tap), "vmmnet0");
    else
        snprintf(tap, sizeof(tap), "vmmk%d", (int)getpid() % 1000000);
    tap_make(true);
    int pkt = packet_socket();
    uint8_t rnd[8];
    ck_assert_int_eq(getrandom(rnd, sizeof(rnd), 0), (ssize_t)sizeof(rnd));
    char token[17];
    for (int i = 0; i < 8; i++)
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);

    char net[64];
    snprintf(net, sizeof(net), "tap=%s,mac=52:54:00:12:34:56%s", tap, NET_VHOST ? ",vhost=on" : "");
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_net"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--net",    net,
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
    char text[8192] = {0};
    size_t text_len = 0;
    bool pinged = false, acked = false, eof = false;
    for (unsigned idle = 0; idle < IDLE_POLLS_MAX;) {
        struct pollfd p[2] = {{.fd = out[0], .events = POLLIN}, {.fd = pkt, .events = POLLIN}};
        if (poll(p, 2, 1000) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        if (p[1].revents & POLLIN) {
            uint8_t f[1600];
            ssize_t n = recv(pkt, f, sizeof(f), 0);
            if (n >= 18 && memcmp(f + 6, GUEST_MAC, 6) == 0 && memcmp(f + 14, "ping", 4) == 0) {
                uint8_t reply[64] = {0};
                memcpy(reply, GUEST_MAC, 6);
                memcpy(reply + 6, "\x02\x00\x00\x00\x00\x02", 6);
                reply[12] = ETHERTYPE >> 8;
                reply[13] = ETHERTYPE & 0xff;
                memcpy(reply + 14, "pong ", 5);
                memcpy(reply + 19, token, 16);
                ck_assert_int_eq(send(pkt, reply, sizeof(reply), 0), (ssize_t)sizeof(reply));
                pinged = true;
            } else if (n >= 34 && memcmp(f, "\x02\x00\x00\x00\x00\x02", 6) == 0 &&
                       memcmp(f + 14, "ack ", 4) == 0 && memcmp(f + 18, token, 16) == 0) {
                acked = true;
            }
        }
        if (p[0].revents) {
            ssize_t n = read(out[0], text + text_len, sizeof(text) - 1 - text_len);
            if (n <= 0) {
                eof = true;
                break;
            }
            text_len += (size_t)n;
        }
    }
    close(out[0]);
    if (!eof)
        kill(pid, SIGKILL); /* silent too long: hung */
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "vmm-run failed: %s", text);
    ck_assert_msg(pinged, "no ping from the guest: %s", text);
    char want[64];
    snprintf(want, sizeof(want), "pong %s", token);
    ck_assert_msg(strstr(text, want), "the guest did not print '%s': %s", want, text);
    /* The ack was sent before the guest printed and exited. */
    for (int i = 0; i < 50 && !acked; i++) {
        uint8_t f[1600];
        struct pollfd p = {.fd = pkt, .events = POLLIN};
        if (poll(&p, 1, 100) == 1 && recv(pkt, f, sizeof(f), 0) >= 34 &&
            memcmp(f + 14, "ack ", 4) == 0 && memcmp(f + 18, token, 16) == 0)
            acked = true;
    }
    ck_assert_msg(acked, "no ack from the guest: %s", text);
    close(pkt);
    tap_make(false);
}
END_TEST

/* vmm-run with argv, stdout and stderr to *out's write end, stdin
 * /dev/null; dies with the test process. */
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

/* The hostile guest (tests/guests/virtio_net_hostile.c): its malformed
 * transmit chains come back used and none of their frames reaches the tap;
 * the good frame after them does and the host's answer reaches the guest;
 * and vmm-run's peak RSS stays within what the same launcher with the same
 * device reaches with a guest that does nothing, plus the guest's whole
 * memory (16 MiB): the hostile requests grow no host heap. */
START_TEST(hostile_guest_is_contained)
{
    if (unshare(CLONE_NEWNET) == 0)
        snprintf(tap, sizeof(tap), "vmmnet0");
    else
        snprintf(tap, sizeof(tap), "vmmh%d", (int)getpid() % 1000000);
    tap_make(true);
    int pkt = packet_socket();
    char net[64];
    snprintf(net, sizeof(net), "tap=%s,mac=52:54:00:12:34:56", tap);

    char *idle_argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("hello"),
                         "--transport", "mmio",     "--mem",
                         "16M",         "--net",    net,
                         NULL};
    int out;
    pid_t pid = spawn(idle_argv, &out);
    char text[8192] = {0};
    size_t text_len = 0;
    for (ssize_t n; (n = read(out, text + text_len, sizeof(text) - 1 - text_len)) > 0;)
        text_len += (size_t)n;
    close(out);
    long base_kb;
    ck_assert_msg(reap(pid, &base_kb) == 0, "the idle guest failed: %s", text);

    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_net_hostile"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--net",    net,
                    NULL};
    pid = spawn(argv, &out);
    text_len = 0;
    memset(text, 0, sizeof(text));
    unsigned bad = 0, good = 0;
    bool eof = false;
    for (unsigned idle = 0; idle < IDLE_POLLS_MAX && !eof;) {
        struct pollfd p[2] = {{.fd = out, .events = POLLIN}, {.fd = pkt, .events = POLLIN}};
        if (poll(p, 2, 1000) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        if (p[1].revents & POLLIN) {
            uint8_t f[1600];
            ssize_t n = recv(pkt, f, sizeof(f), 0);
            if (n >= 18 && memcmp(f + 14, "bad", 3) == 0)
                bad++;
            if (n >= 18 && memcmp(f + 6, GUEST_MAC, 6) == 0 && memcmp(f + 14, "good", 4) == 0) {
                uint8_t reply[64] = {0};
                memcpy(reply, GUEST_MAC, 6);
                memcpy(reply + 6, "\x02\x00\x00\x00\x00\x02", 6);
                reply[12] = ETHERTYPE >> 8;
                reply[13] = ETHERTYPE & 0xff;
                memcpy(reply + 14, "answer", 6);
                ck_assert_int_eq(send(pkt, reply, sizeof(reply), 0), (ssize_t)sizeof(reply));
                good++;
            }
        }
        if (p[0].revents) {
            ssize_t n = read(out, text + text_len, sizeof(text) - 1 - text_len);
            if (n <= 0)
                eof = true;
            else
                text_len += (size_t)n;
        }
    }
    close(out);
    if (!eof)
        kill(pid, SIGKILL); /* silent too long: hung */
    long hostile_kb;
    int status = reap(pid, &hostile_kb);
    ck_assert_msg(status == 0, "vmm-run: status %d: %s", status, text);
    ck_assert_msg(strstr(text, "virtio_net_hostile ok"), "%s", text);
    ck_assert_uint_eq(good, 1);
    /* The frames the guest sent before exiting are all in the socket now. */
    for (uint8_t f[1600]; recv(pkt, f, sizeof(f), MSG_DONTWAIT) > 0;)
        if (memcmp(f + 14, "bad", 3) == 0)
            bad++;
    ck_assert_uint_eq(bad, 0);
    ck_assert_msg(hostile_kb <= base_kb + (16 << 10),
                  "vmm-run's peak RSS: %ld KiB with the hostile guest, %ld KiB idle", hostile_kb,
                  base_kb);
    close(pkt);
    tap_make(false);
}
END_TEST

int main(void)
{
    if (access("/dev/net/tun", R_OK | W_OK) != 0) {
        printf("skipped: /dev/net/tun is missing (CI runs as root with it)\n");
        return 77;
    }
    if (NET_VHOST && access("/dev/vhost-net", R_OK | W_OK) != 0) {
        printf("skipped: /dev/vhost-net is missing (modprobe vhost_net; the nested level 1 has "
               "it)\n");
        return 77;
    }
    Suite *s = suite_create("virtio-net");
    TCase *tc = tcase_create("tap");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, guest_exchanges_frames_through_the_tap);
    if (!NET_VHOST)
        tcase_add_test(tc, hostile_guest_is_contained);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
