// SPDX-License-Identifier: Apache-2.0
/*
 * vsock-io: one side of the real-Linux test's vsock round trip
 * (tests/linux/hooks/80-vsock.sh). Built static, so that the busybox
 * initramfs of level 2 can run it; level 1 runs the same binary.
 *
 * Every connection carries one exchange: the side that connected writes its
 * whole file, then reads exactly as many bytes as the other side sends back;
 * the side that accepted reads exactly SIZE bytes, writes its file, and
 * closes once the other side has (so that nothing it sent is cut off). No
 * side half-closes, so the exchange needs nothing but a stream.
 *
 *   vsock-io listen PORT SIZE SEND RECV        AF_VSOCK, any CID, one connection
 *   vsock-io connect CID PORT SIZE SEND RECV   AF_VSOCK
 *   vsock-io ulisten PATH SIZE SEND RECV       a Unix socket (vmm-run's PATH_<port>)
 *   vsock-io uconnect PATH PORT SIZE SEND RECV a Unix socket with vmm-run's
 *                                              "CONNECT <port>\n", answered "OK <n>\n"
 *   vsock-io cid                               print this machine's CID (/dev/vsock)
 *
 * SIZE: the bytes to read; SEND: the file to write; RECV: where what was
 * read goes. Exit status 0 when the exchange is complete, 1 otherwise, with
 * one line on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "vsock-io: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static unsigned long number(const char *s)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno)
        die("bad number");
    return v;
}

/* Write all of file SEND to fd. */
static void send_file(int fd, const char *path)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        die(path);
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0)
            die("read the file to send");
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0)
                die("send");
            off += w;
        }
    }
    close(in);
}

/* Read exactly size bytes from fd into file RECV. */
static void recv_file(int fd, unsigned long size, const char *path)
{
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        die(path);
    char buf[65536];
    while (size > 0) {
        ssize_t n = read(fd, buf, size < sizeof(buf) ? size : sizeof(buf));
        if (n < 0)
            die("receive");
        if (n == 0) {
            errno = 0;
            fprintf(stderr, "vsock-io: the stream ended %lu bytes early\n", size);
            exit(1);
        }
        if (write(out, buf, (size_t)n) != n)
            die("write the received file");
        size -= (unsigned long)n;
    }
    if (close(out) < 0)
        die(path);
}

/* "CONNECT <port>\n", then the device's "OK <host port>\n". */
static void handshake(int fd, unsigned long port)
{
    char line[64];
    int len = snprintf(line, sizeof(line), "CONNECT %lu\n", port);
    if (write(fd, line, (size_t)len) != len)
        die("send CONNECT");
    size_t n = 0;
    while (n == 0 || line[n - 1] != '\n') {
        if (n == sizeof(line) - 1 || read(fd, line + n, 1) != 1) {
            errno = 0;
            die("no \"OK <port>\" answer");
        }
        n++;
    }
    line[n] = '\0';
    if (strncmp(line, "OK ", 3) != 0) {
        errno = 0;
        die("the answer is not \"OK <port>\"");
    }
}

int main(int argc, char **argv)
{
    int fd = -1;
    bool accepted;
    const char *mode = argc > 1 ? argv[1] : "";
    char **rest;
    if (!strcmp(mode, "cid") && argc == 2) {
        unsigned cid;
        int d = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
        if (d < 0 || ioctl(d, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
            die("/dev/vsock");
        printf("%u\n", cid);
        return 0;
    }
    if (!strcmp(mode, "listen") && argc == 6) {
        struct sockaddr_vm a = {.svm_family = AF_VSOCK,
                                .svm_cid = VMADDR_CID_ANY,
                                .svm_port = (unsigned)number(argv[2])};
        int l = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0)
            die("listen on AF_VSOCK");
        fd = accept(l, NULL, NULL);
        accepted = true;
        rest = argv + 3;
    } else if (!strcmp(mode, "connect") && argc == 7) {
        struct sockaddr_vm a = {.svm_family = AF_VSOCK,
                                .svm_cid = (unsigned)number(argv[2]),
                                .svm_port = (unsigned)number(argv[3])};
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            die("connect over AF_VSOCK");
        accepted = false;
        rest = argv + 4;
    } else if ((!strcmp(mode, "ulisten") && argc == 6) ||
               (!strcmp(mode, "uconnect") && argc == 7)) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(argv[2]) >= sizeof(a.sun_path)) {
            errno = ENAMETOOLONG;
            die(argv[2]);
        }
        strcpy(a.sun_path, argv[2]);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            die("socket");
        if (mode[1] == 'l') {
            unlink(a.sun_path);
            if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1) < 0)
                die(argv[2]);
            fd = accept(s, NULL, NULL);
            accepted = true;
            rest = argv + 3;
        } else {
            if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
                die(argv[2]);
            fd = s;
            handshake(fd, number(argv[3]));
            accepted = false;
            rest = argv + 4;
        }
    } else {
        fprintf(stderr,
                "usage: vsock-io listen PORT SIZE SEND RECV | connect CID PORT SIZE SEND "
                "RECV | ulisten PATH SIZE SEND RECV | uconnect PATH PORT SIZE SEND RECV | cid\n");
        return 1;
    }
    if (fd < 0)
        die("accept");
    unsigned long size = number(rest[0]);
    if (accepted) {
        recv_file(fd, size, rest[2]);
        send_file(fd, rest[1]);
        char c;
        if (read(fd, &c, 1) != 0)
            die("the other side did not close");
    } else {
        send_file(fd, rest[1]);
        recv_file(fd, size, rest[2]);
    }
    close(fd);
    return 0;
}
