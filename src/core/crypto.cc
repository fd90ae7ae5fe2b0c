#include "core/crypto.h"

#include <cstdlib>
#include <vector>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace kervan::core {
namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr std::string_view kSealPrefix = "v1:";

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

struct CipherCtx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
};

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), Bytes(bytes),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0)
    return InvalidArgument("not base64");
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), Bytes(text),
                          static_cast<int>(text.size()));
  if (n < 0)
    return InvalidArgument("not base64");
  size_t padding = 0;
  if (!text.empty() && text.back() == '=')
    padding = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    std::abort();
  return out;
}

std::string RandomAlphanumeric(size_t length) {
  static constexpr std::string_view kAlphabet =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string out;
  out.reserve(length);
  while (out.size() < length) {
    // Rejection sampling: 248 = 4 * 62, so bytes below it map uniformly.
    for (unsigned char b : RandomBytes(length)) {
      if (b < 248 && out.size() < length)
        out.push_back(kAlphabet[b % 62]);
    }
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * bytes.size(), '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[c >> 4];
    out[2 * i + 1] = kHex[c & 0xf];
  }
  return out;
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), Bytes(data), data.size(), mac, &len);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

Result<std::string> SealSecret(std::string_view key, std::string_view plaintext) {
  if (key.size() != kKeyBytes)
    return Internal(fmt::format("sealing key must be {} bytes, got {}", kKeyBytes, key.size()));
  std::string nonce = RandomBytes(kNonceBytes);
  std::string out = nonce;
  out.resize(kNonceBytes + plaintext.size() + kTagBytes);
  auto* ct = reinterpret_cast<unsigned char*>(out.data() + kNonceBytes);
  CipherCtx c;
  int len = 0;
  if (c.ctx == nullptr ||
      EVP_EncryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, Bytes(key), Bytes(nonce)) != 1 ||
      EVP_EncryptUpdate(c.ctx, ct, &len, Bytes(plaintext), static_cast<int>(plaintext.size())) !=
          1 ||
      EVP_EncryptFinal_ex(c.ctx, ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, ct + plaintext.size()) != 1) {
    return Internal("AES-256-GCM encryption failed");
  }
  return std::string(kSealPrefix) + Base64Encode(out);
}

Result<std::string> OpenSecret(std::string_view key, std::string_view sealed) {
  if (key.size() != kKeyBytes)
    return Internal(fmt::format("sealing key must be {} bytes, got {}", kKeyBytes, key.size()));
  if (!sealed.starts_with(kSealPrefix))
    return Internal("sealed secret: unknown format (expected \"v1:\")");
  auto decoded = Base64Decode(sealed.substr(kSealPrefix.size()));
  if (!decoded)
    return Internal("sealed secret: not base64");
  std::string raw = std::move(decoded).value();
  if (raw.size() < kNonceBytes + kTagBytes)
    return Internal("sealed secret: too short");
  size_t ct_len = raw.size() - kNonceBytes - kTagBytes;
  std::string plain(ct_len, '\0');
  auto* nonce = Bytes(raw);
  auto* ct = nonce + kNonceBytes;
  std::string tag = raw.substr(kNonceBytes + ct_len);
  CipherCtx c;
  int len = 0;
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  if (c.ctx == nullptr ||
      EVP_DecryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, Bytes(key), nonce) != 1 ||
      EVP_DecryptUpdate(c.ctx, out, &len, ct, static_cast<int>(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(c.ctx, out + len, &len) != 1) {
    return Internal("sealed secret: authentication failed (altered, or sealed with another key)");
  }
  return plain;
}

}  // namespace kervan::core
