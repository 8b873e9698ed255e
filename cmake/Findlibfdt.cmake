# Find libfdt (the device-tree library of dtc; Debian package libfdt-dev).
# Its pkg-config module "libfdt" is used when present; Debian 12's libfdt-dev
# ships none, so the header and library are also looked up directly.
# Installed beside vmmConfig.cmake so static consumers find it the same way.
#
# Defines: libfdt_FOUND, the imported target libfdt::libfdt, LIBFDT_LIBRARY,
# LIBFDT_INCLUDE_DIR, and LIBFDT_FROM_PKGCONFIG (TRUE when the pkg-config
# module exists, so vmm.pc can name it in Requires.private).
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_LIBFDT QUIET libfdt)
endif()
find_path(LIBFDT_INCLUDE_DIR libfdt.h HINTS ${PC_LIBFDT_INCLUDE_DIRS})
find_library(LIBFDT_LIBRARY NAMES fdt HINTS ${PC_LIBFDT_LIBRARY_DIRS})
set(LIBFDT_FROM_PKGCONFIG ${PC_LIBFDT_FOUND})

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(libfdt
  REQUIRED_VARS LIBFDT_LIBRARY LIBFDT_INCLUDE_DIR
  VERSION_VAR PC_LIBFDT_VERSION)

if(libfdt_FOUND AND NOT TARGET libfdt::libfdt)
  add_library(libfdt::libfdt UNKNOWN IMPORTED)
  set_target_properties(libfdt::libfdt PROPERTIES
    IMPORTED_LOCATION "${LIBFDT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LIBFDT_INCLUDE_DIR}")
endif()
mark_as_advanced(LIBFDT_INCLUDE_DIR LIBFDT_LIBRARY)
