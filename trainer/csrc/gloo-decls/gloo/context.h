// Declarations only: see gloo-decls/README.md.
#pragma once
#include <chrono>

namespace gloo {
class Context {
 public:
  // Named by an inline ProcessGroupGloo::setTimeout that the shim never calls.
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
