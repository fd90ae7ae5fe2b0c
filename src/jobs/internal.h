// Shared inside the jobs module; not part of its public header.
#pragma once

#include <string>
#include <vector>

#include "jobs/jobs.h"

namespace kervan::jobs {

Json AllocationJson(const std::vector<NodeAllocation>& allocation);
std::vector<NodeAllocation> AllocationFromJson(const Json& json);

// "0,1,3": the GPU indices of an allocation, for CUDA_VISIBLE_DEVICES.
std::string GpuList(const std::vector<NodeAllocation>& allocation);

}  // namespace kervan::jobs
