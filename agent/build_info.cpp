#include "agent/build_info.h"

#ifndef BERTH_GIT_COMMIT
#define BERTH_GIT_COMMIT "unknown"
#endif
#ifndef BERTH_BUILD_TIME
#define BERTH_BUILD_TIME ""
#endif

namespace berth::agent {

const BuildInfo& build_info() {
#if defined(__clang__)
  static const BuildInfo info{BERTH_VERSION, BERTH_GIT_COMMIT, BERTH_BUILD_TIME,
                              "clang " __clang_version__};
#else
  static const BuildInfo info{BERTH_VERSION, BERTH_GIT_COMMIT, BERTH_BUILD_TIME,
                              "gcc " __VERSION__};
#endif
  return info;
}

}  // namespace berth::agent
