// Declarations only: see gloo-decls/README.md.
#pragma once
