# What `cmake --install` (and `make install PREFIX=... DESTDIR=...`) puts
# where, with GNUInstallDirs' Debian-aware directories (lib/<multiarch>
# under /usr):
#   lib:     libpagewire.so.0.X.Y, its SONAME link and the dev link, .a
#   include: pagewire/pagewire.h
#   pkgconfig/pagewire.pc, cmake/pagewire/ (find_package(pagewire CONFIG))
#   bin:     pagewire-perf, pagewire-demo
#   man:     man3 per function, pagewire(7), the tools' man1 (docs/)
#   doc:     README, CHANGELOG, LICENSE, docs/*.md, examples/
# cmake --install writes install_manifest.txt into the build directory;
# `make uninstall` removes what it lists.
include(CMakePackageConfigHelpers)

install(TARGETS pagewire_shared pagewire
  EXPORT pagewireTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(FILES ${PROJECT_SOURCE_DIR}/include/pagewire/pagewire.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/pagewire COMPONENT dev)
install(TARGETS pagewire-perf pagewire-demo
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)

# pkg-config: paths relative to ${prefix}, so PKG_CONFIG_SYSROOT_DIR and a
# relocated tree work.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(PW_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(PW_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(PW_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(PW_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/pagewire.pc.in
               ${PROJECT_BINARY_DIR}/pagewire.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pagewire.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

set(PW_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pagewire)
install(EXPORT pagewireTargets NAMESPACE pagewire::
  FILE pagewireTargets.cmake DESTINATION ${PW_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/pagewireConfig.cmake.in
  ${PROJECT_BINARY_DIR}/pagewireConfig.cmake
  INSTALL_DESTINATION ${PW_CMAKE_DIR})
# 0.x: a minor release may change the API, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/pagewireConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/pagewireConfig.cmake
              ${PROJECT_BINARY_DIR}/pagewireConfigVersion.cmake
  DESTINATION ${PW_CMAKE_DIR} COMPONENT dev)

install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/CHANGELOG.md
              ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/BENCHMARKS.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT dev)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs
  COMPONENT dev FILES_MATCHING PATTERN "*.md" PATTERN man EXCLUDE)
if(EXISTS ${PROJECT_SOURCE_DIR}/examples)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples
    COMPONENT dev)
endif()
