// berth-probe: tries one confined operation inside a container and prints
// "ok" or the errno name; exit 0 on success, 1 on failure, 2 on bad usage.
// Static, so it runs in an image with nothing else in it.
//   unshare-user | unshare-mount | keyctl | mount | mkdir [PATH]
//   udp-to-localhost PORT   an Ethernet frame to the gateway's MAC carrying a
//                           UDP datagram for 127.0.0.1:PORT (CVE-2020-8558)
//   udp-listen ADDR PORT    prints every datagram received (busybox nc has no -u)
//   udp-send ADDR PORT TEXT
//   hold-tcp ADDR PORT N SECONDS  opens N connections at once that never send a
//                           byte, prints how many connected, holds them SECONDS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <linux/keyctl.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(int rc) {
  if (rc == 0) {
    puts("ok");
    return 0;
  }
  const char* name = strerrorname_np(errno);
  printf("%s\n", name ? name : strerror(errno));
  return 1;
}

static int fail(const char* what) {
  printf("%s: %s\n", what, strerror(errno));
  return 2;
}

static uint16_t checksum(const void* data, size_t len) {
  const uint8_t* p = data;
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += (uint32_t)(p[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

// The default gateway of eth0 (from /proc/net/route) and its MAC (from /proc/net/arp).
static int gateway(struct in_addr* ip, uint8_t mac[6]) {
  FILE* f = fopen("/proc/net/route", "r");
  if (!f) return -1;
  char line[256], iface[32];
  unsigned dest, gw, flags;
  int found = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%31s %x %x %x", iface, &dest, &gw, &flags) == 4 && dest == 0 && gw != 0) {
      ip->s_addr = gw;
      found = 1;
      break;
    }
  fclose(f);
  if (!found) return -1;
  // Make sure the kernel has resolved it: one datagram to a discard port.
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr = *ip};
  sendto(s, "", 0, 0, (struct sockaddr*)&a, sizeof a);
  close(s);
  usleep(300000);
  f = fopen("/proc/net/arp", "r");
  if (!f) return -1;
  char want[32], addr[32], hw[32];
  snprintf(want, sizeof want, "%s", inet_ntoa(*ip));
  found = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%31s %*s %*s %31s", addr, hw) == 2 && !strcmp(addr, want) &&
        sscanf(hw, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4],
               &mac[5]) == 6) {
      found = 1;
      break;
    }
  fclose(f);
  return found ? 0 : -1;
}

static int udp_to_localhost(int port) {
  struct in_addr gw;
  uint8_t gw_mac[6];
  if (gateway(&gw, gw_mac) != 0) return fail("no gateway MAC");
  int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
  if (s < 0) return fail("socket(AF_PACKET)");
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "eth0");
  if (ioctl(s, SIOCGIFHWADDR, &ifr) != 0) return fail("SIOCGIFHWADDR");
  uint8_t my_mac[6];
  memcpy(my_mac, ifr.ifr_hwaddr.sa_data, 6);
  if (ioctl(s, SIOCGIFADDR, &ifr) != 0) return fail("SIOCGIFADDR");
  struct in_addr my_ip = ((struct sockaddr_in*)&ifr.ifr_addr)->sin_addr;

  const char payload[] = "berth-probe\n";
  uint8_t frame[14 + 20 + 8 + sizeof payload];
  memset(frame, 0, sizeof frame);
  struct ether_header* eth = (struct ether_header*)frame;
  memcpy(eth->ether_dhost, gw_mac, 6);
  memcpy(eth->ether_shost, my_mac, 6);
  eth->ether_type = htons(ETH_P_IP);
  struct iphdr* ip = (struct iphdr*)(frame + 14);
  ip->version = 4;
  ip->ihl = 5;
  ip->tot_len = htons(20 + 8 + sizeof payload);
  ip->ttl = 64;
  ip->protocol = IPPROTO_UDP;
  ip->saddr = my_ip.s_addr;
  ip->daddr = htonl(INADDR_LOOPBACK);
  ip->check = checksum(ip, 20);
  struct udphdr* udp = (struct udphdr*)(frame + 14 + 20);
  udp->source = htons(40000);
  udp->dest = htons((uint16_t)port);
  udp->len = htons(8 + sizeof payload);
  memcpy(frame + 14 + 20 + 8, payload, sizeof payload);

  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex("eth0"),
                           .sll_halen = 6};
  memcpy(to.sll_addr, gw_mac, 6);
  for (int i = 0; i < 3; ++i)
    if (sendto(s, frame, sizeof frame, 0, (struct sockaddr*)&to, sizeof to) < 0) return report(-1);
  puts("sent");
  return 0;
}

static int udp_socket(const char* addr, int port, struct sockaddr_in* a) {
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, addr, &a->sin_addr);
  return socket(AF_INET, SOCK_DGRAM, 0);
}

static int udp_listen(const char* addr, int port) {
  struct sockaddr_in a;
  int s = udp_socket(addr, port, &a);
  if (s < 0 || bind(s, (struct sockaddr*)&a, sizeof a) != 0) return fail("bind");
  setvbuf(stdout, NULL, _IONBF, 0);
  char buf[2048];
  for (;;) {
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
  }
}

static int udp_send(const char* addr, int port, const char* text) {
  struct sockaddr_in a;
  int s = udp_socket(addr, port, &a);
  return report(sendto(s, text, strlen(text), 0, (struct sockaddr*)&a, sizeof a) < 0 ? -1 : 0);
}

static int hold_tcp(const char* addr, int port, int n, int seconds) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, addr, &a.sin_addr) != 1 || n <= 0 || n > 4096) return 2;
  struct pollfd* fds = calloc((size_t)n, sizeof *fds);
  if (!fds) return 1;
  for (int i = 0; i < n; ++i) {
    fds[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fds[i].events = POLLOUT;
    if (fds[i].fd >= 0 && connect(fds[i].fd, (struct sockaddr*)&a, sizeof a) != 0 && errno != EINPROGRESS) {
      close(fds[i].fd);
      fds[i].fd = -1;
    }
  }
  int connected = 0, pending = n;
  for (int round = 0; round < 100 && pending > 0; ++round) {  // 10 s at most
    if (poll(fds, (nfds_t)n, 100) < 0 && errno != EINTR) break;
    pending = 0;
    for (int i = 0; i < n; ++i) {
      if (fds[i].fd < 0 || !fds[i].events) continue;
      if (!fds[i].revents) {
        ++pending;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
      fds[i].events = 0;  // decided
      if (err == 0) ++connected;
    }
  }
  printf("%d connected\n", connected);
  fflush(stdout);
  sleep((unsigned)seconds);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* what = argv[1];
  if (!strcmp(what, "unshare-user")) return report(unshare(CLONE_NEWUSER));
  if (!strcmp(what, "unshare-mount")) return report(unshare(CLONE_NEWNS));
  if (!strcmp(what, "keyctl"))
    return report(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1) < 0 ? -1 : 0);
  if (!strcmp(what, "mount")) {
    mkdir("/probe-mnt", 0755);
    return report(mount("tmpfs", "/probe-mnt", "tmpfs", 0, NULL));
  }
  if (!strcmp(what, "mkdir")) return report(mkdir(argc > 2 ? argv[2] : "/probe-dir", 0755));
  if (!strcmp(what, "udp-to-localhost") && argc > 2) return udp_to_localhost(atoi(argv[2]));
  if (!strcmp(what, "udp-listen") && argc > 3) return udp_listen(argv[2], atoi(argv[3]));
  if (!strcmp(what, "udp-send") && argc > 4) return udp_send(argv[2], atoi(argv[3]), argv[4]);
  if (!strcmp(what, "hold-tcp") && argc > 5) return hold_tcp(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  return 2;
}
