// lstmcore — version and ABI namespace.
#pragma once

#define LSTMCORE_VERSION_MAJOR 0
#define LSTMCORE_VERSION_MINOR 1
#define LSTMCORE_VERSION_PATCH 0
#define LSTMCORE_VERSION_STRING "0.1.0"

// Every symbol lives in lstmcore::v0 (an inline namespace), so a later ABI can
// live beside this one while source code keeps writing lstmcore::forward.
#define LSTMCORE_INLINE_NAMESPACE_BEGIN inline namespace v0 {
#define LSTMCORE_INLINE_NAMESPACE_END }
