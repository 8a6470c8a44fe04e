#pragma once
// Each module's Engine API routes. dockerd's paths, without the /vX.Y prefix.
#include "agent/api/router.h"
#include "agent/engine.h"

namespace berth::agent::api {

void add_image_routes(Router& router, Engine& engine);      // /images/*
void add_build_routes(Router& router, Engine& engine);      // /build, /build/prune (agent/api/build_routes.cpp)
void add_container_routes(Router& router, Engine& engine);  // /containers/*, /exec/*
void add_network_routes(Router& router, Engine& engine);    // /networks/*
void add_volume_routes(Router& router, Engine& engine);     // /volumes/*
void add_event_routes(Router& router, Engine& engine);      // /events (agent/api/events.cpp)
void add_event_routes(Router& router, std::shared_ptr<events::EventBus> bus);  // the same, for tests

}  // namespace berth::agent::api
