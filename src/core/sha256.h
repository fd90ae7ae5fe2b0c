// SHA-256 (OpenSSL) as lowercase hex.
#pragma once

#include <string>
#include <string_view>

namespace kervan::core {

std::string Sha256Hex(std::string_view data);

}  // namespace kervan::core
