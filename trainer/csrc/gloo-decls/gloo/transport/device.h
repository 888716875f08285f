// Declarations only: see gloo-decls/README.md.
#pragma once
namespace gloo::transport {
class Device;
class UnboundBuffer;
}
