#pragma once
// /images/* routes (docker pull, push, load, save, import, tag, rmi, images,
// image inspect, history). add_image_routes(Router&, Engine&) from routes.h
// calls this; tests call it directly.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/api/router.h"
#include "agent/events/event_bus.h"
#include "agent/image/image_store.h"
#include "agent/image/registry.h"

namespace berth::agent::api {

// Images `docker images` leaves out unless asked for all (the builder's
// untagged intermediate images, as dockerd hides them).
using HiddenImage = std::function<bool(const std::string& image_id)>;

// events: where pull, push, tag, untag, delete, load and import are published (may be null).
void add_image_routes(Router& router, image::ImageStore& store, image::RegistryOptions registry,
                      HiddenImage hidden = {}, std::shared_ptr<events::EventBus> events = nullptr);

// dockerd's ?filters= for images: {"key":{"value":true}} or {"key":["value"]};
// HttpError 400 for anything else.
std::map<std::string, std::vector<std::string>> image_filters(const Request& req);

// POST /auth (agent/api/image_auth.cpp).
void add_auth_routes(Router& router, image::RegistryOptions registry);
// GET /distribution/{name}/json (agent/api/image_distribution.cpp).
void add_distribution_routes(Router& router, image::RegistryOptions registry);
// POST /images/prune (agent/api/image_prune.cpp); never removes an image a
// container uses (ImageStore::container_using).
void add_image_prune_routes(Router& router, image::ImageStore& store, HiddenImage hidden = {},
                            std::shared_ptr<events::EventBus> events = nullptr);

// Image summaries and inspect bodies, as dockerd builds them.
nlohmann::json image_summary_json(const image::ImageRecord& rec);
nlohmann::json image_inspect_json(const image::ImageRecord& rec);

}  // namespace berth::agent::api
