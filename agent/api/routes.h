#pragma once
// Each module's Engine API routes. dockerd's paths, without the /vX.Y prefix.
#include "agent/api/router.h"
#include "agent/engine.h"

namespace berth::agent::api {

void add_image_routes(Router& router, Engine& engine);      // /images/*
void add_auth_routes(Router& router, Engine& engine);        // /auth (agent/api/image_auth.cpp)
void add_distribution_routes(Router& router, Engine& engine);  // /distribution/* (image_distribution.cpp)
void add_image_prune_routes(Router& router, Engine& engine);   // /images/prune (image_prune.cpp)
void add_system_df_routes(Router& router, Engine& engine);     // /system/df (agent/api/system_df.cpp)
void add_swarm_routes(Router& router);                         // swarm-only routes, /plugins (swarm.cpp)
void add_build_routes(Router& router, Engine& engine);      // /build, /build/prune (agent/api/build_routes.cpp)
void add_container_routes(Router& router, Engine& engine);  // /containers/*, /exec/*
void add_container_archive_routes(Router& router, Engine& engine);  // docker cp, export, diff (container_archive.cpp)
void add_commit_routes(Router& router, Engine& engine);      // /commit (agent/api/build_commit.cpp)
// /containers/{id}/stats and /update (agent/api/container_stats.cpp); added by add_container_routes
void add_container_stats_routes(Router& router, Engine& engine);
void add_network_routes(Router& router, Engine& engine);    // /networks/*
void add_cluster_routes(Router& router, Engine& engine);    // /berth/cluster* (agent/api/network_cluster.cpp)
void add_volume_routes(Router& router, Engine& engine);     // /volumes/*
void add_event_routes(Router& router, Engine& engine);      // /events (agent/api/events.cpp)
void add_event_routes(Router& router, std::shared_ptr<events::EventBus> bus);  // the same, for tests

}  // namespace berth::agent::api
