# Cross build for arm64 (aarch64) Linux with Debian's cross toolchain and the
# arm64 -dev packages installed through multiarch:
#
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install gcc-aarch64-linux-gnu liburing-dev:arm64 libseccomp-dev:arm64 liblzma-dev:arm64
#   sh cmake/aarch64-deps.sh build-arm64-deps    # libfdt for arm64, unpacked
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#       -DVMM_AARCH64_ROOT=$PWD/build-arm64-deps -DVMM_STATIC_LAUNCHER=ON
#
# Libraries and headers come from /usr/lib/aarch64-linux-gnu and
# /usr/include/aarch64-linux-gnu (multiarch), pkg-config modules from there
# too; libfdt from VMM_AARCH64_ROOT (its -dev package cannot be installed
# beside the host's: see cmake/aarch64-deps.sh).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LINKER aarch64-linux-gnu-ld CACHE FILEPATH "")
set(CMAKE_OBJCOPY aarch64-linux-gnu-objcopy CACHE FILEPATH "")
set(CMAKE_AR aarch64-linux-gnu-ar CACHE FILEPATH "")
set(CMAKE_RANLIB aarch64-linux-gnu-ranlib CACHE FILEPATH "")

set(VMM_AARCH64_ROOT "" CACHE PATH "Unpacked arm64 packages (cmake/aarch64-deps.sh)")
set(CMAKE_FIND_ROOT_PATH / ${VMM_AARCH64_ROOT})

# Headers and libraries of the target only; programs (dtc, sh) of the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config: the arm64 modules, not the host's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# The Check suites need Check for arm64 and run where they are built: off
# unless asked (tests/aarch64 runs the arm64 side from an x86 build).
set(VMM_BUILD_TESTS OFF CACHE BOOL "Build the test suites and test guests")
