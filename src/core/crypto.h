// Small cryptographic building blocks (OpenSSL underneath): random secrets,
// constant-time comparison, HMAC-SHA256 and authenticated encryption of
// secrets at rest. Higher modules never call OpenSSL directly.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace kervan::core {

// `n` bytes from the operating system's CSPRNG. Aborts if the kernel cannot
// provide them (there is no safe fallback for secrets).
std::string RandomBytes(size_t n);

// `length` characters of [0-9A-Za-z] drawn uniformly from the CSPRNG
// (about 5.95 bits each).
std::string RandomAlphanumeric(size_t length);

// Equality whose running time depends only on the lengths, not on where the
// inputs first differ (token and signature checks).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// HMAC-SHA256(key, data) as lowercase hex.
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// Standard base64 (RFC 4648, with padding).
std::string Base64Encode(std::string_view bytes);
// kInvalidArgument unless `text` is padded standard base64.
Result<std::string> Base64Decode(std::string_view text);

// Lowercase hex of arbitrary bytes.
std::string HexEncode(std::string_view bytes);

// Authenticated encryption (AES-256-GCM, random 96-bit nonce) of a secret
// that must be stored and later used in clear (e.g. a webhook's HMAC key).
// `key` must be 32 bytes. The result is base64 text "v1:<nonce|ciphertext|tag>".
Result<std::string> SealSecret(std::string_view key, std::string_view plaintext);
// Reverses SealSecret; kInternal when the text was altered or the key differs.
Result<std::string> OpenSecret(std::string_view key, std::string_view sealed);

}  // namespace kervan::core
