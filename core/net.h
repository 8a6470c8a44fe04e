#pragma once
#include <chrono>
#include <string>

namespace berth {

// True when a TCP connection to host:port succeeds within `timeout`; `error` says why not.
bool tcp_port_open(const std::string& host, int port, std::chrono::milliseconds timeout,
                   std::string* error = nullptr);

// A port that was free on 127.0.0.1 a moment ago.
int free_tcp_port();

// Whether binding 127.0.0.1:port with SO_REUSEADDR would succeed now (what
// QEMU's slirp and VirtualBox's NAT do when they forward a port).
bool loopback_port_free(int port);

// True when 127.0.0.1:port sends an SSH banner ("SSH-") within `timeout`. A NAT
// forward accepts before the guest listens, so a bare connect proves nothing.
bool loopback_ssh_banner(int port, std::chrono::milliseconds timeout);

// "[::1]" for IPv6 literals, the host itself otherwise.
std::string host_for_url(const std::string& host);

}  // namespace berth
