# Generates C for the .proto files under proto/ with protoc-c at build time, into the build
# directory (the generated files are not kept in the tree), and links them with libprotobuf-c
# into sluice_core. They build as a library of their own: generated code is not held to
# sluice's warning flags.
#
# Included from CMakeLists.txt after sluice_core is defined.

sluice_require_pkg(PROTOBUF_C libprotobuf-c libprotobuf-c-dev)
find_program(PROTOC_C protoc-c)
if(NOT PROTOC_C)
    message(FATAL_ERROR "protoc-c not found: apt-get install -y protobuf-c-compiler")
endif()

set(SLUICE_PROTO_DIR ${CMAKE_SOURCE_DIR}/proto)
set(SLUICE_PROTO_OUT ${CMAKE_BINARY_DIR}/generated/proto)
file(GLOB_RECURSE SLUICE_PROTOS CONFIGURE_DEPENDS ${SLUICE_PROTO_DIR}/*.proto)
set(SLUICE_PROTO_SOURCES "")
set(SLUICE_PROTO_HEADERS "")
foreach(proto ${SLUICE_PROTOS})
    file(RELATIVE_PATH rel ${SLUICE_PROTO_DIR} ${proto})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    list(APPEND SLUICE_PROTO_SOURCES ${SLUICE_PROTO_OUT}/${stem}.pb-c.c)
    list(APPEND SLUICE_PROTO_HEADERS ${SLUICE_PROTO_OUT}/${stem}.pb-c.h)
endforeach()
# One protoc-c run for all files: each file's output includes the headers of its imports.
add_custom_command(
    OUTPUT ${SLUICE_PROTO_SOURCES} ${SLUICE_PROTO_HEADERS}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${SLUICE_PROTO_OUT}
    COMMAND ${PROTOC_C} -I${SLUICE_PROTO_DIR} --c_out=${SLUICE_PROTO_OUT} ${SLUICE_PROTOS}
    DEPENDS ${SLUICE_PROTOS}
    COMMENT "Generating C from proto/ with protoc-c"
    VERBATIM)
add_library(sluice_proto OBJECT ${SLUICE_PROTO_SOURCES})
target_include_directories(sluice_proto SYSTEM PUBLIC ${SLUICE_PROTO_OUT})
target_link_libraries(sluice_proto PUBLIC PkgConfig::PROTOBUF_C)
set_target_properties(sluice_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_options(sluice_proto PRIVATE -w)
target_sources(sluice_core PRIVATE $<TARGET_OBJECTS:sluice_proto>)
target_include_directories(sluice_core SYSTEM PUBLIC ${SLUICE_PROTO_OUT})
target_link_libraries(sluice_core PUBLIC PkgConfig::PROTOBUF_C)
add_dependencies(sluice_core sluice_proto)
