#pragma once
// The /networks routes on a NetworkManager alone (add_network_routes uses the
// Engine's); lets tests drive the API without a whole Engine.
#include "agent/api/router.h"
#include "agent/network/network_manager.h"

namespace berth::agent::api {
void add_network_routes(Router& router, network::NetworkManager& networks);
}
