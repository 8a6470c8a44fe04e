#pragma once
// /images/* routes (docker pull, push, load, save, import, tag, rmi, images,
// image inspect, history). add_image_routes(Router&, Engine&) from routes.h
// calls this; tests call it directly.
#include "agent/api/router.h"
#include "agent/image/image_store.h"
#include "agent/image/registry.h"

namespace berth::agent::api {

void add_image_routes(Router& router, image::ImageStore& store, image::RegistryOptions registry);

// Image summaries and inspect bodies, as dockerd builds them.
nlohmann::json image_summary_json(const image::ImageRecord& rec);
nlohmann::json image_inspect_json(const image::ImageRecord& rec);

}  // namespace berth::agent::api
