# Dependencies are Debian packages; each failure names the package to install.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
    message(FATAL_ERROR "pkg-config not found: apt-get install -y pkg-config")
endif()
find_package(Threads REQUIRED)

macro(sluice_require_pkg var modules package)
    pkg_check_modules(${var} QUIET IMPORTED_TARGET ${modules})
    if(NOT ${var}_FOUND)
        message(FATAL_ERROR "${modules} not found: apt-get install -y ${package}")
    endif()
endmacro()

sluice_require_pkg(LIBEVENT "libevent_core;libevent_extra;libevent_pthreads;libevent_openssl"
                   libevent-dev)
find_package(OpenSSL 3.0 REQUIRED)
sluice_require_pkg(HIREDIS hiredis libhiredis-dev)
sluice_require_pkg(YAML yaml-0.1 libyaml-dev)
sluice_require_pkg(YAJL yajl libyajl-dev)
sluice_require_pkg(NGHTTP2 libnghttp2 libnghttp2-dev)

# llhttp ships as C sources (Debian node-llhttp); compile them into a static library.
set(LLHTTP_ROOT /usr/share CACHE PATH "prefix holding llhttp/ and include/llhttp/")
find_path(LLHTTP_INCLUDE_DIR llhttp.h PATHS ${LLHTTP_ROOT}/include/llhttp NO_DEFAULT_PATH)
if(NOT LLHTTP_INCLUDE_DIR OR NOT EXISTS ${LLHTTP_ROOT}/llhttp/llhttp.c)
    message(FATAL_ERROR "llhttp sources not found under ${LLHTTP_ROOT}: apt-get install -y node-llhttp")
endif()
add_library(llhttp STATIC ${LLHTTP_ROOT}/llhttp/api.c ${LLHTTP_ROOT}/llhttp/http.c
                          ${LLHTTP_ROOT}/llhttp/llhttp.c)
target_include_directories(llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
set_target_properties(llhttp PROPERTIES C_EXTENSIONS ON POSITION_INDEPENDENT_CODE ON)
target_compile_options(llhttp PRIVATE -O2 -w)

# Hyperscan matches every path_regex route in one scan (src/route/regex_hs.c). Debian ships it
# for amd64 only; elsewhere the POSIX matcher (literal-prefix prefilter, then regexec) is used.
set(SLUICE_HYPERSCAN AUTO CACHE STRING "Match path_regex routes with Hyperscan: AUTO, ON or OFF")
set_property(CACHE SLUICE_HYPERSCAN PROPERTY STRINGS AUTO ON OFF)
set(SLUICE_HAVE_HYPERSCAN 0)
if(NOT SLUICE_HYPERSCAN STREQUAL "OFF")
    pkg_check_modules(HYPERSCAN QUIET IMPORTED_TARGET libhs)
    if(HYPERSCAN_FOUND)
        set(SLUICE_HAVE_HYPERSCAN 1)
    elseif(SLUICE_HYPERSCAN STREQUAL "ON")
        message(FATAL_ERROR "libhs not found: apt-get install -y libhyperscan-dev (amd64 only)")
    endif()
endif()
message(STATUS "path_regex matcher: hyperscan=${SLUICE_HAVE_HYPERSCAN}")

if(SLUICE_TESTS)
    sluice_require_pkg(CHECK check check)
endif()
