# Configure tests/install/subproject (libvmm through add_subdirectory), build
# only what it asks for, run it, and check that its install installs nothing.
# Variables: SOURCE_DIR, WORK_DIR.
file(REMOVE_RECURSE ${WORK_DIR})
include(${CMAKE_CURRENT_LIST_DIR}/run.cmake)

cmake_host_system_information(RESULT jobs QUERY NUMBER_OF_LOGICAL_CORES)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/subproject -B ${WORK_DIR}/build
    -DVMM_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build --parallel ${jobs})
run(${WORK_DIR}/build/consumer)
run(${WORK_DIR}/build/consumer_static)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/build --prefix ${WORK_DIR}/prefix)
file(GLOB_RECURSE installed ${WORK_DIR}/prefix/*)
if(installed)
  message(FATAL_ERROR "libvmm as a subproject installed files: ${installed}")
endif()
message(STATUS "subproject check passed")
