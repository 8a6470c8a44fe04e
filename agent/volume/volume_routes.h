#pragma once
// The /volumes routes on a VolumeStore alone (add_volume_routes uses the
// Engine's store); lets tests drive the API without a whole Engine.
#include "agent/api/router.h"
#include "agent/volume/volume_store.h"

namespace berth::agent::api {
void add_volume_routes(Router& router, volume::VolumeStore& store);
}
