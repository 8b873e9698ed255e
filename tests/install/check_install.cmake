# Install the build into a scratch prefix, then build a consumer against it
# through find_package(vmm) and through pkg-config, and run both.
# Variables: BUILD_DIR, SOURCE_DIR, WORK_DIR, SOVERSION.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
include(${CMAKE_CURRENT_LIST_DIR}/run.cmake)

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
# Headers, and the reference: a man page per function (vmm_virtio_unlock
# shares vmm_virtio_lock's through a .so link) and the Markdown.
foreach(f include/vmm/vmm.h include/vmm/memory.h include/vmm/version.h include/vmm/virtio_mmio.h
        share/man/man3/libvmm.3 share/man/man3/vmm_vm_create.3 share/man/man3/vmm_virtio_unlock.3
        share/doc/libvmm/reference.md share/doc/libvmm/writing-a-device.md)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
file(GLOB libdirs ${prefix}/lib*)
file(GLOB_RECURSE pc ${prefix}/*/vmm.pc)
file(GLOB_RECURSE so ${prefix}/*/libvmm.so.${SOVERSION})
if(NOT pc OR NOT so)
  message(FATAL_ERROR "vmm.pc or the libvmm.so.${SOVERSION} SONAME link is missing under ${prefix}")
endif()
file(GLOB_RECURSE stray ${prefix}/include/*.in)
if(stray)
  message(FATAL_ERROR "installed a template: ${stray}")
endif()

# find_package(vmm)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${WORK_DIR}/cmake
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_RPATH=${libdirs})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake)
run(${WORK_DIR}/cmake/consumer)
run(${WORK_DIR}/cmake/consumer_static)

# pkg-config
get_filename_component(pcdir ${pc} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pcdir})
run(pkg-config --cflags --libs vmm)
string(STRIP "${last_output}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(cc -o ${WORK_DIR}/pc_consumer ${SOURCE_DIR}/tests/install/consumer/main.c ${flags}
    -Wl,-rpath,${libdirs})
run(${WORK_DIR}/pc_consumer)
message(STATUS "install check passed: ${last_output}")
