// core: the vocabulary every module shares — Result/Error, ids, time, JSON
// helpers, structured logging, Prometheus metrics, SHA-256, the declarative
// state-machine engine and the search filter language. core depends on
// nothing else in Kervan (only the C++ library, nlohmann-json, fmt and
// OpenSSL).
//
// This is core's one public header; the headers it includes are its parts.
#pragma once

#include "core/crypto.h"
#include "core/filter.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/result.h"
#include "core/sha256.h"
#include "core/state_machine.h"
#include "core/time.h"
